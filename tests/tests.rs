//! One integration test binary (ripgrep's layout): each module is one area.

mod it;

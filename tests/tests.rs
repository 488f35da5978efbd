//! One integration test binary (ripgrep's layout): each module is one area.

// The whole crate is test code: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod it;

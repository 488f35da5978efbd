//! The diff gate: turns available versions into decisions. Pure logic, no I/O.
//!
//! [`versioning`] parses and orders versions and classifies update steps; [`available`] picks,
//! for one dependency, the newest version within each step size.

pub mod available;
pub mod versioning;

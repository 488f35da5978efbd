//! The post-merge verifier: find upkeep's merged updates that have no verdict yet, gather
//! evidence of how Flux reconciled them, decide, and act (status, revert PR or forward-fix issue).
//!
//! It sits beside `run`, never inside it: it reads the same trailers and markers, and hands the
//! gate its verdicts through git notes and commit statuses.

pub mod evidence;
pub mod kube;

//! upkeep: a GitOps-native update bot for Flux repositories.
//!
//! The library follows the loop in `DESIGN.md`: [`extract`] finds what carries a version, the
//! later stages (lookup, gate, edit, git/forge, verify) act on what it finds, and [`app`] is the
//! only module that knows them all. [`model`] and [`yaml`] are the shared core and do no I/O.

#![deny(missing_docs)]

pub mod action;
pub mod app;
pub mod cli;
pub mod config;
pub mod config_reference;
pub mod edit;
pub mod extract;
pub mod forge;
pub mod gate;
pub mod git;
pub mod lookup;
pub mod model;
pub mod progress;
pub mod redact;
pub mod regenerate;
pub mod render;
pub mod report;
pub mod retry;
pub mod run;
pub mod verify;
pub mod yaml;

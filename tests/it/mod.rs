mod bad_input;
mod cli;
mod corpus;
mod fuzz;
mod util;
mod walk;

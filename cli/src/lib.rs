//! The `sfpipe` command's library, callable from tests: `demo` (the whole pipeline on one machine),
//! `run` (one machine against any org, into SQLite or Snowflake), `check` (whether each thing
//! a load needs works), `status` (what the pipeline has done), `cost` (what its runs cost), `trace` (where a row came from), `replay` and
//! `backfill` (merge a stored run again; read a window again), `bench` and
//! `verify` (the warehouse compared with the org). Start at `main.rs` for the commands.

pub mod bench;
pub mod check;
pub mod cost;
pub mod demo;
pub mod queue_counts;
pub mod replay;
pub mod run;
pub mod stack;
pub mod status;
pub mod status_page;
pub mod trace;
pub mod verify;
pub mod worker;

//! The `sfpipe` command's library: the demo and the warehouse check, callable from tests.

pub mod bench;
pub mod demo;
pub mod run;
pub mod verify;

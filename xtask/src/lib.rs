//! The build and release tasks of this repository, one module per task; `main.rs` only parses
//! the flags and dispatches. A library too, so the integration tests share its code (the
//! template renderer above all) instead of copying it.

pub mod bench;
pub mod cfn;
pub mod deterministic_zip;
pub mod doctor;
pub mod e2e;
pub mod flags;
pub mod package;
pub mod project;
pub mod publish;
pub mod template;
pub mod test;
pub mod tools;
pub mod versions;

//! History checkers. This module owns deciding whether a recorded history of client operations
//! is linearizable against a sequential model ([`linearizability`]), and reading the recorded
//! histories of the Porcupine test suite into that form ([`history_files`]).
//!
//! It does not record histories, run clusters or print reports: callers build a history (from the
//! simulator or a file), ask for a [`linearizability::Verdict`], and print what it points at.

pub mod history_files;
pub mod linearizability;
pub mod registers;

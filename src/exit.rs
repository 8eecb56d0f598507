//! The exit codes, and the trait by which each library error says which one it means. A
//! leaf: every module implements [`Classify`] for its own error without importing the
//! error type that gathers them all.

/// Exit code for bad input: nothing was touched (clap uses 2 for usage errors too).
pub const EXIT_BAD_INPUT: i32 = 2;
/// Exit code for a failure after which nothing needs attention.
pub const EXIT_FAILED: i32 = 1;
/// Exit code for an outcome that leaves something for a human to look at.
pub const EXIT_ATTENTION: i32 = 3;

/// Each library error says whether it is the user's input to fix (exit 2, nothing was
/// touched) or a failure (exit 1). An error that wraps another asks it, so the same cloud
/// or store error means the same thing from every command however deep it is wrapped
/// (status and swap once disagreed on a 403).
pub trait Classify {
    fn is_bad_input(&self) -> bool;
}

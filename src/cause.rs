//! An error with its causes, for a message: many libraries' Display stops at the outermost
//! layer (reqwest's at "error sending request"), and the cause is what helps.

/// `e`, then each of its sources, joined by ": ".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

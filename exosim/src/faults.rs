//! Injected faults and latency: `OP:N:ACTION` makes the N-th call of operation OP (an
//! operationId of the spec, or `*`) answer differently.

use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Action {
    /// Answer this status with an error body; nothing happens.
    Status(u16),
    /// Do the work, then drop the connection before the answer is complete.
    Drop,
    /// Accept the request, then let its operation end in `failure`; nothing happens.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    pub op: String,
    pub nth: u64,
    pub action: Action,
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "fault {s:?}: write OP:N:ACTION, e.g. create-instance:2:500, get-operation:1:drop, create-instance:1:fail"
            )
        };
        let mut parts = s.split(':');
        let (Some(op), Some(nth), Some(action), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let nth: u64 = nth.parse().ok().filter(|n| *n > 0).ok_or_else(usage)?;
        let action = match action {
            "drop" => Action::Drop,
            "fail" => Action::Fail,
            code => Action::Status(
                code.parse()
                    .ok()
                    .filter(|c| (400..600).contains(c))
                    .ok_or_else(usage)?,
            ),
        };
        Ok(Fault {
            op: op.to_string(),
            nth,
            action,
        })
    }
}

/// `OP:DURATION`, e.g. `create-instance:5s` or `*:50ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    pub op: String,
    pub delay: Duration,
}

impl std::str::FromStr for Latency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (op, d) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("latency {s:?}: write OP:DURATION, e.g. create-instance:5s"))?;
        let delay = humantime::parse_duration(d).map_err(|e| format!("latency {s:?}: {e}"))?;
        Ok(Latency {
            op: op.to_string(),
            delay,
        })
    }
}

pub fn matches(pattern: &str, op: &str) -> bool {
    pattern == "*" || pattern == op
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_faults_and_latency() {
        assert_eq!(
            "create-instance:2:500".parse::<Fault>().unwrap(),
            Fault {
                op: "create-instance".into(),
                nth: 2,
                action: Action::Status(500)
            }
        );
        assert_eq!("*:1:drop".parse::<Fault>().unwrap().action, Action::Drop);
        assert_eq!("x:1:fail".parse::<Fault>().unwrap().action, Action::Fail);
        for bad in ["x:0:500", "x:1:200", "x:1", "x:1:boom", "x:1:500:9"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
        assert_eq!(
            "*:50ms".parse::<Latency>().unwrap().delay,
            Duration::from_millis(50)
        );
    }
}

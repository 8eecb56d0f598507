//! A problem from toml or serde, or a secret found in the file, as a message that names
//! the field and the line without quoting the file: a value pasted into the wrong place
//! may be a secret (crate::redact).

use super::{Problem, SECRET_ENV};
use crate::redact::described;

/// A toml or serde message with every quoted value in it hidden: `invalid type: string
/// "x", expected u32` quotes the file.
fn without_values(message: &str) -> String {
    let mut unquoted = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        unquoted.push_str(first);
    }
    // Odd pieces are inside quotes; an unbalanced last quote hides the rest too.
    for (i, piece) in parts.enumerate() {
        if i % 2 == 0 {
            unquoted.push_str(&described(piece));
        } else {
            unquoted.push_str(piece);
        }
    }
    // serde quotes in backticks what it did not know (`unknown field \`X\``, `unknown
    // variant \`X\``): the file's text, shown only when it reads like a key. What follows
    // "expected" is baton's own names.
    let (theirs, ours) = match unquoted.find("expected") {
        Some(at) => unquoted.split_at(at),
        None => (unquoted.as_str(), ""),
    };
    let mut out = String::with_capacity(unquoted.len());
    for (i, piece) in theirs.split('`').enumerate() {
        if i % 2 == 1 {
            out.push_str(&crate::redact::shown(piece));
        } else {
            out.push_str(piece);
        }
    }
    out.push_str(ours);
    out
}

/// Finds keys that look like secrets anywhere in the file. Only their names are reported.
pub(super) fn secret_fields(table: &toml::Table, prefix: &str) -> Vec<Problem> {
    const WORDS: [&str; 5] = ["secret", "password", "token", "api_key", "access_key"];
    let mut found = Vec::new();
    for (key, value) in table {
        let field = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let toml::Value::Table(inner) = value {
            found.extend(secret_fields(inner, &field));
        } else if WORDS.iter().any(|w| key.to_ascii_lowercase().contains(w)) {
            // The key itself may be the pasted secret: named only when it reads like one.
            let named = if crate::redact::is_key_like(key) {
                field
            } else {
                format!("{prefix}.<a key of {} characters>", key.chars().count())
            };
            found.push(Problem {
                field: Some(named),
                line: None,
                message: "looks like a secret; baton never reads secrets from files".to_string(),
                fix: format!(
                    "delete it from the file and export it instead: {}",
                    SECRET_ENV.join(", ")
                ),
            });
        }
    }
    found
}

/// Turns a toml error into a problem naming the field, without quoting the file.
pub(crate) fn problem_from_toml(e: &toml::de::Error, text: &str) -> Problem {
    let (field, line) = match e.span() {
        Some(span) if !(span.start == 0 && span.end >= text.len()) => {
            let (field, line) = field_at(text, span.start);
            (field, Some(line))
        }
        _ => (None, None),
    };
    Problem {
        field,
        line,
        message: without_values(e.message().trim()),
        fix: "compare with the commented example that `baton init --dir /tmp/example` writes"
            .to_string(),
    }
}

/// The `section.key` whose line holds byte `offset`, and the 1-based line number. Only
/// names that read like keys ([`crate::redact::is_key_like`]): the line may hold a pasted
/// secret, a table header too.
fn field_at(text: &str, offset: usize) -> (Option<String>, usize) {
    let before = &text[..offset.min(text.len())];
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let section = before[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .and_then(header_name);
    if line.starts_with('[') {
        return (header_name(line), line_no);
    }
    // Only a line of the form `key = ...` names a key: anything else may be a value (a
    // pasted secret, say) and is never repeated.
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| crate::redact::is_key_like(k));
    let field = match (section, key) {
        (Some(s), Some(k)) => Some(format!("{s}.{k}")),
        (None, Some(k)) => Some(k.to_string()),
        (s, None) => s,
    };
    (field, line_no)
}

/// The table a `[name]` or `[[name]]` line opens, if its name reads like a key; nothing
/// after the closing bracket.
fn header_name(line: &str) -> Option<String> {
    let inner = line.trim_start_matches('[');
    let name = inner.split(']').next()?.trim();
    crate::redact::is_key_like(name).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_at_names_section_and_key() {
        let text = "[site]\nname = 1\n\n[cloud]\n  zone = \"x\"\n";
        assert_eq!(
            field_at(text, text.find("1").unwrap()),
            (Some("site.name".into()), 2)
        );
        assert_eq!(
            field_at(text, text.find("zone").unwrap()),
            (Some("cloud.zone".into()), 5)
        );
        assert_eq!(
            field_at(text, text.find("[cloud]").unwrap()),
            (Some("cloud".into()), 4)
        );
    }

    #[test]
    fn a_line_that_is_no_assignment_names_no_field() {
        let text = "[cloud]\nEXOSCALE_API_SECRET abcdef\n";
        let (field, line) = field_at(text, text.find("abc").unwrap());
        assert_eq!((field.as_deref(), line), (Some("cloud"), 2));
        assert_eq!(
            without_values("invalid type: string \"hunter2\", expected u32"),
            "invalid type: string the value (7 characters), expected u32"
        );
    }
}

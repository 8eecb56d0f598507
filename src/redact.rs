//! How a message names what a user wrote without repeating it. A value pasted into the
//! wrong field, or a key id pasted as a key, may be a secret, and messages reach terminals,
//! CI logs and bug reports (issue 29): names that look like baton's own (lower case, few
//! digits) are shown, anything else only by its length.

/// A value by its length only: `the value (12 characters)`.
pub fn described(value: &str) -> String {
    match value.chars().count() {
        0 => "the empty value".to_string(),
        1 => "the value (1 character)".to_string(),
        n => format!("the value ({n} characters)"),
    }
}

/// At most 80 characters of a name read from a file or the store, for a message (always
/// with `{:?}`, which escapes what a terminal would act on).
pub fn clipped(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Whether `name` reads like one of baton's keys, tables or enum values rather than a
/// pasted secret: lower case, digits, `_` and `-`, at most 32 characters, at most four
/// digits (a random hex or base32 token of that length has more), each dotted part alike.
pub fn is_key_like(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let part = part.trim();
            !part.is_empty()
                && part.len() <= 32
                && part.starts_with(|c: char| c.is_ascii_lowercase())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
                && part.bytes().filter(u8::is_ascii_digit).count() <= 4
        })
}

/// `name` in backticks when it reads like a key, else by its length.
pub fn shown(name: &str) -> String {
    if is_key_like(name) {
        format!("`{}`", name.trim())
    } else {
        described(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_shown_and_what_could_be_a_secret_is_not() {
        for key in [
            "region",
            "swap.health_timeout",
            "s3",
            "elastic-ip",
            "cloud.target_group",
        ] {
            assert!(is_key_like(key), "{key}");
        }
        for secret in [
            "EXO1a2b3c4d5e6f7a8b9c0d1e2f",
            "AKIAIOSFODNN7EXAMPLE",
            "wjalrxutnfemi/k7mdeng/bpxrficyexamplekey",
            "3f9a1c0b7e6d5a4f3e2d1c0b",
            "cloud] api = 1",
            "",
        ] {
            assert!(!is_key_like(secret), "{secret}");
            assert!(
                !shown(secret).contains(secret) || secret.is_empty(),
                "{secret}"
            );
        }
    }
}

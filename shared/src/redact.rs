//! Secrets never reach a log line: every host log goes through `redact_secrets`.

use std::borrow::Cow;

/// Prefixes of secrets this product issues or accepts: API keys, consumer keys, admin keys,
/// webhook signing secrets.
pub const SECRET_PREFIXES: [&str; 5] = ["sk_test_", "sk_live_", "ck_", "adm_", "whsec_"];

fn is_secret_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Replaces the secret part of every `sk_test_…`, `sk_live_…`, `ck_…`, `adm_…` and `whsec_…` token
/// with `***`.
///
/// Applied by hosts to every log line (debug included), as a last line of defence.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || !is_secret_char(bytes[i - 1]);
        let prefix = if at_boundary {
            SECRET_PREFIXES
                .iter()
                .find(|p| bytes[i..].starts_with(p.as_bytes()))
        } else {
            None
        };
        if let Some(p) = prefix {
            let start = i + p.len();
            let mut end = start;
            while end < bytes.len() && is_secret_char(bytes[end]) {
                end += 1;
            }
            if end > start {
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..start]);
                o.push_str("***");
                copied = end;
                i = end;
                continue;
            }
        }
        i += 1;
    }
    match out {
        None => Cow::Borrowed(text),
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_wherever_they_appear() {
        let line =
            "auth=Bearer sk_live_abcDEF123 key:ck_9f8e7d admin adm_x-y_z hook whsec_0a1b end";
        let r = redact_secrets(line);
        assert_eq!(
            r,
            "auth=Bearer sk_live_*** key:ck_*** admin adm_*** hook whsec_*** end"
        );
    }

    #[test]
    fn text_without_secrets_is_not_copied() {
        assert!(matches!(redact_secrets("nothing here"), Cow::Borrowed(_)));
        // A prefix inside a word is not a token of ours.
        assert_eq!(redact_secrets("truck_driver"), "truck_driver");
    }
}

//! Removing a secret (a password, an API key) from text that is about to be shown.
//!
//! Libraries and servers echo URLs in their errors, and a URL carries a secret encoded:
//! percent-encoded with upper- or lower-case hex, or form-encoded (`+` for a space). Every
//! such form is replaced, not only the verbatim one.

/// `text` with every occurrence of `secret`, verbatim or in any of its URL encodings,
/// replaced by `***`. An empty secret changes nothing.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    let mut forms = vec![secret.to_owned(), encode(secret, false, false), encode(secret, true, false)];
    forms.push(encode(secret, false, true));
    forms.push(encode(secret, true, true));
    // Longest first, so that a form containing another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    let mut out = text.to_owned();
    for form in &forms {
        if out.contains(form.as_str()) {
            out = out.replace(form.as_str(), "***");
        }
    }
    out
}

/// Percent-encodes every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`), with
/// lower-case hex when `lower`; or when `form`, as a query string is encoded
/// (`application/x-www-form-urlencoded`: a space as `+`, `*` kept, `~` encoded).
fn encode(text: &str, lower: bool, form: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        let kept: &[u8] = if form { b"*-._" } else { b"-._~" };
        if byte.is_ascii_alphanumeric() || kept.contains(&byte) {
            out.push(byte as char);
        } else if form && byte == b' ' {
            out.push('+');
        } else if lower {
            out.push_str(&format!("%{byte:02x}"));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn scrubs_the_secret_in_every_url_encoding() {
        let secret = "sek rit&x=1/é";
        for shown in [
            "sek rit&x=1/é",
            "sek+rit%26x%3D1%2F%C3%A9",
            "sek%20rit%26x%3D1%2F%C3%A9",
            "sek%20rit%26x%3d1%2f%c3%a9",
            "sek+rit%26x%3d1%2f%c3%a9",
        ] {
            let text = format!("GET /?token={shown}&a=b failed; again: {shown}");
            assert_eq!(scrub(&text, secret), "GET /?token=***&a=b failed; again: ***", "{shown}");
        }
        assert_eq!(scrub("nothing here", secret), "nothing here");
        assert_eq!(scrub("abc", ""), "abc");
    }
}

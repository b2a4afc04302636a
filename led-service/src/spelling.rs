//! The `{state}` of `POST /{state}`, parsed as the original FastAPI service parsed a `bool`.

/// Every spelling the original accepted, in any letter case.
pub const ACCEPTED: [&str; 12] = [
    "true", "false", "1", "0", "yes", "no", "on", "off", "t", "f", "y", "n",
];

/// `Some(true)` for true/1/yes/on/t/y, `Some(false)` for false/0/no/off/f/n (any case), else
/// `None`.
pub fn parse_state(input: &str) -> Option<bool> {
    const ON: [&str; 6] = ["true", "1", "yes", "on", "t", "y"];
    const OFF: [&str; 6] = ["false", "0", "no", "off", "f", "n"];
    if ON.iter().any(|word| word.eq_ignore_ascii_case(input)) {
        Some(true)
    } else if OFF.iter().any(|word| word.eq_ignore_ascii_case(input)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_in_every_case() {
        for word in ACCEPTED {
            let expected = ["true", "1", "yes", "on", "t", "y"].contains(&word);
            for spelling in [word.to_owned(), word.to_uppercase(), capitalized(word)] {
                assert_eq!(parse_state(&spelling), Some(expected), "{spelling}");
            }
        }
        assert_eq!(
            parse_state("True"),
            Some(true),
            "what the original button module sends"
        );
        assert_eq!(parse_state("False"), Some(false));
        assert_eq!(parse_state("yEs"), Some(true));
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "", " true", "true ", "2", "-1", "tru", "truee", "none", "null", "ja", "onn", "0x1",
            "1.0", "вкл", "✓",
        ] {
            assert_eq!(parse_state(bad), None, "{bad:?}");
        }
    }

    fn capitalized(word: &str) -> String {
        let mut chars = word.chars();
        chars
            .next()
            .map(|first| first.to_uppercase().chain(chars).collect())
            .unwrap_or_default()
    }
}

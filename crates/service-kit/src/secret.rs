//! Secrets (the API token, the MQTT password): given as a value or as a file that holds it (a
//! Docker or Kubernetes secret), `VARIABLE` or `VARIABLE_FILE`, and carried everywhere as a
//! [`Secret`], which prints as `[redacted]`: a `{:?}` of a struct that holds one cannot put it
//! in a log.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A value that must never reach a log. Only [`Secret::expose`] gives it out.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The value itself, for the one place that uses it (a header, a comparison, a login).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True for an empty value (compose passes a variable empty when `.env` has none).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// For clap: any text is a secret (checked when resolved).
    pub fn parse(input: &str) -> Result<Secret, std::convert::Infallible> {
        Ok(Secret::new(input))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A secret given as a value or as a file that holds it, `VARIABLE` and `VARIABLE_FILE`: the
/// file's content without its trailing line break and spaces; `None` when neither is set. An
/// empty value counts as unset (compose passes one when `.env` has none), but an empty file
/// is an error: it was named to hold the secret (a Kubernetes Secret made from an unset
/// variable is empty), and taking it for "none" would turn authentication off unseen.
pub fn resolve(
    value: Option<&Secret>,
    file: Option<&Path>,
    what: &'static str,
    variable: &'static str,
) -> Result<Option<Secret>, SecretError> {
    let given = value.filter(|value| !value.is_empty());
    let secret = match (given, file) {
        (Some(_), Some(_)) => return Err(SecretError::Both { variable }),
        (Some(value), None) => value.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
                what,
                variable,
                path: path.to_owned(),
                source,
            })?;
            let secret = Secret::new(text.trim_end());
            if secret.is_empty() {
                return Err(SecretError::Empty {
                    what,
                    variable,
                    path: path.to_owned(),
                });
            }
            secret
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(secret))
}

/// A secret could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both ways are set, so which one is meant is unclear.
    #[error(
        "both {variable} and {variable}_FILE are set: use one (the file keeps it out of `docker inspect`), and unset or empty the other"
    )]
    Both {
        /// The variable, such as `API_TOKEN`.
        variable: &'static str,
    },
    /// The file holds nothing.
    #[error(
        "{} ({variable}_FILE) is empty: put {what} in it, or unset {variable}_FILE (a Kubernetes Secret made from an unset variable is empty; an empty file never means \"none\")",
        path.display()
    )]
    Empty {
        /// What it is, such as "the API token".
        what: &'static str,
        /// The variable, such as `API_TOKEN`.
        variable: &'static str,
        /// The file named.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error(
        "cannot read {what} from {} ({variable}_FILE): {source}; mount the secret there, readable by uid 65532, or set {variable} instead",
        path.display()
    )]
    File {
        /// What it is, such as "the API token".
        what: &'static str,
        /// The variable, such as `API_TOKEN`.
        variable: &'static str,
        /// The file named.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

    use super::*;

    #[test]
    fn a_secret_never_prints_itself() {
        let secret = Secret::new("s3cret");
        #[derive(Debug)]
        #[allow(dead_code)] // read by Debug only
        struct Holder {
            token: Option<Secret>,
        }
        let holder = Holder {
            token: Some(secret.clone()),
        };
        for printed in [
            format!("{secret}"),
            format!("{secret:?}"),
            format!("{holder:?}"),
            format!("{holder:#?}"),
        ] {
            assert!(!printed.contains("s3cret"), "{printed}");
            assert!(printed.contains("[redacted]"), "{printed}");
        }
        assert_eq!(secret.expose(), "s3cret");
    }

    #[test]
    fn an_empty_file_is_an_error_and_an_empty_value_is_unset() {
        let file = std::env::temp_dir().join(format!("empty-secret-{}", std::process::id()));
        std::fs::write(&file, "\n").unwrap();
        let message = resolve(None, Some(&file), "the API token", "API_TOKEN")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("API_TOKEN_FILE) is empty") && message.contains("never means"),
            "{message}"
        );
        std::fs::remove_file(&file).unwrap();
        let empty = Secret::new("");
        assert!(
            resolve(Some(&empty), None, "the API token", "API_TOKEN")
                .unwrap()
                .is_none()
        );
    }
}

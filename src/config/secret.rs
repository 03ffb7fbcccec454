//! Secrets never live in the config file: a secret key holds `${ENV_VAR}`, or its `*_file`
//! twin names a file to read. This module resolves both and keeps the value out of `Debug`.

use std::cell::Cell;
use std::path::Path;

use super::ConfigError;
pub use crate::secret::Secret;

thread_local! {
    /// While set (`--check --no-secrets`), a secret that is not there — an unset or empty
    /// variable, a missing file — is a placeholder, counted here, not an error.
    static PLACEHOLDERS: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Runs `f` (a validation, on this thread) with absent secrets replaced by placeholders;
/// returns its result and how many placeholders stood in.
pub(crate) fn with_placeholders<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PLACEHOLDERS.with(|p| p.set(Some(0)));
    let out = f();
    let used = PLACEHOLDERS.with(|p| p.take()).unwrap_or(0);
    (out, used)
}

/// A stand-in for an absent secret at `path`, when placeholders are on: long enough for
/// every length rule, distinct per key (two static tokens never collide).
fn placeholder(path: &str) -> Option<Secret> {
    PLACEHOLDERS.with(|p| {
        let n = p.get()?;
        p.set(Some(n + 1));
        Some(Secret::new(format!(
            "placeholder-for-{path}-{}",
            "x".repeat(48)
        )))
    })
}

/// Resolves the pair `<key>` / `<key>_file` at `path` (e.g. `providers.idp.client_secret`).
///
/// `inline` must be exactly `${NAME}` naming a set, non-empty environment variable;
/// `file` is read (relative paths from the config file's folder) and trailing
/// newlines are trimmed. Giving both, or a literal value, is an error.
pub fn resolve(
    path: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base_dir: &Path,
) -> Result<Option<Secret>, ConfigError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigError::at(
            path,
            format!(
                "give either `{}` or `{}_file`, not both",
                leaf(path),
                leaf(path)
            ),
        )),
        (Some(value), None) => from_env(path, value).map(Some),
        (None, Some(file)) => from_file(&format!("{path}_file"), file, base_dir).map(Some),
        (None, None) => Ok(None),
    }
}

/// Refuses a secret shorter than `min` characters, naming the key it was given with:
/// `path` (inline `${ENV}`) or `path_file`.
pub(crate) fn require_length(
    path: &str,
    inline: bool,
    secret: &Secret,
    min: usize,
    what: &str,
) -> Result<(), ConfigError> {
    if secret.expose().len() >= min {
        return Ok(());
    }
    let key = if inline {
        path.to_string()
    } else {
        format!("{path}_file")
    };
    Err(ConfigError::at(
        key,
        format!("{what} must be at least {min} characters"),
    ))
}

fn leaf(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

fn from_env(path: &str, value: &str) -> Result<Secret, ConfigError> {
    let name = value
        .strip_prefix("${")
        .and_then(|v| v.strip_suffix('}'))
        .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| {
            ConfigError::at(
                path,
                format!(
                    "secrets are not written in the config file: use `${{ENV_VAR}}` or `{}_file: /path`",
                    leaf(path)
                ),
            )
        })?;
    let value = std::env::var(name);
    if let Ok(v) = &value {
        if !v.is_empty() {
            return Ok(Secret::new(v.clone()));
        }
    }
    if let Some(stand_in) = placeholder(path) {
        return Ok(stand_in);
    }
    match value {
        Ok(_) => Err(ConfigError::at(
            path,
            format!("environment variable `{name}` is empty"),
        )),
        Err(_) => Err(ConfigError::at(
            path,
            format!("environment variable `{name}` is not set"),
        )),
    }
}

fn from_file(path: &str, file: &str, base_dir: &Path) -> Result<Secret, ConfigError> {
    let full = base_dir.join(file);
    if full.is_dir() {
        // A Kubernetes Secret mounted as a volume is a directory with one file per key.
        return Err(ConfigError::at(
            path,
            format!(
                "{} is a directory (a mounted Secret?): name the file inside it, e.g. {}/token",
                full.display(),
                full.display()
            ),
        ));
    }
    if !full.exists() {
        if let Some(stand_in) = placeholder(path) {
            return Ok(stand_in);
        }
    }
    let text = std::fs::read_to_string(&full)
        .map_err(|e| ConfigError::at(path, format!("cannot read {}: {e}", full.display())))?;
    let value = text.trim_end_matches(['\r', '\n']);
    if value.is_empty() {
        return Err(ConfigError::at(
            path,
            format!("{} is empty", full.display()),
        ));
    }
    Ok(Secret::new(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secret_is_refused_without_echoing_it() {
        let err = resolve(
            "providers.a.client_secret",
            Some("hunter2"),
            None,
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("providers.a.client_secret"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn env_and_file_forms() {
        std::env::set_var("SG_TEST_SECRET_OK", "s3cret");
        let s = resolve("k", Some("${SG_TEST_SECRET_OK}"), None, Path::new("."))
            .unwrap()
            .unwrap();
        assert_eq!(s.expose(), "s3cret");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");

        let err = resolve(
            "k",
            Some("${SG_TEST_SECRET_UNSET_XYZ}"),
            None,
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("SG_TEST_SECRET_UNSET_XYZ") && err.contains("not set"),
            "{err}"
        );

        let dir = std::env::temp_dir().join(format!("sg-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.txt"), "from-file\n").unwrap();
        let s = resolve("k", None, Some("s.txt"), &dir).unwrap().unwrap();
        assert_eq!(s.expose(), "from-file");
        let err = resolve("k", None, Some("missing.txt"), &dir)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("k_file:"), "{err}");
        assert!(resolve("k", Some("${A}"), Some("x"), &dir).is_err());
    }
}

//! `cluster:` — Redis, the shared secret, revocations and the shared identity cache.

use super::*;

pub(super) fn cluster(
    c: &crate::config::file::ClusterFile,
    base_dir: &Path,
) -> Result<crate::cluster::ClusterSettings> {
    let url = url::Url::parse(&c.redis.url).map_err(|e| {
        ConfigError::at(
            "cluster.redis.url",
            format!("not a URL ({e}): expected redis://host:6379/0 or rediss://host:6380/0"),
        )
    })?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(ConfigError::at(
            "cluster.redis.url",
            format!(
                "scheme `{}` is not Redis: expected redis:// or rediss:// (TLS)",
                url.scheme()
            ),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::at("cluster.redis.url", "names no host"));
    }
    if url.password().is_some() {
        return Err(ConfigError::at(
            "cluster.redis.url",
            "holds a password: give it as cluster.redis.password: ${ENV_VAR} or cluster.redis.password_file",
        ));
    }
    let password = crate::config::secret::resolve(
        "cluster.redis.password",
        c.redis.password.as_deref(),
        c.redis.password_file.as_deref(),
        base_dir,
    )?;
    let key_secret = crate::config::secret::resolve(
        "cluster.key_secret",
        c.key_secret.as_deref(),
        c.key_secret_file.as_deref(),
        base_dir,
    )?
    .ok_or_else(|| {
        ConfigError::at(
            "cluster.key_secret_file",
            "is required: a secret shared by every replica (e.g. `head -c 32 /dev/urandom | base64`), which keys the token keys and purge names",
        )
    })?;
    crate::config::secret::require_length(
        "cluster.key_secret",
        c.key_secret.is_some(),
        &key_secret,
        32,
        "the cluster secret",
    )?;
    let positive = nonzero;
    let max_entries = c.revocations.max_entries.unwrap_or(100_000);
    if max_entries < 1_000 {
        return Err(ConfigError::at(
            "cluster.revocations.max_entries",
            "must be at least 1000 (replicas disconnected longer than the stream covers flush their caches)",
        ));
    }
    let stream = c
        .revocations
        .stream
        .clone()
        .unwrap_or_else(|| "sessiongate:revocations".into());
    if stream.is_empty() {
        return Err(ConfigError::at(
            "cluster.revocations.stream",
            "cannot be empty",
        ));
    }
    let shared_cache = match &c.shared_cache {
        Some(crate::config::file::Toggle::Switch(false)) => None,
        Some(crate::config::file::Toggle::Switch(true)) | None => Some(shared_cache(
            &crate::config::file::ClusterSharedCacheFile::default(),
        )?),
        Some(crate::config::file::Toggle::Settings(s)) if s.enabled == Some(false) => None,
        Some(crate::config::file::Toggle::Settings(s)) => Some(shared_cache(s)?),
    };
    let rate_limits = match &c.rate_limits {
        Some(crate::config::file::Toggle::Switch(false)) => None,
        Some(crate::config::file::Toggle::Switch(true)) | None => Some(rate_limits(
            &crate::config::file::ClusterRateLimitsFile::default(),
        )?),
        Some(crate::config::file::Toggle::Settings(s)) if s.enabled == Some(false) => None,
        Some(crate::config::file::Toggle::Settings(s)) => Some(rate_limits(s)?),
    };
    Ok(crate::cluster::ClusterSettings {
        url: c.redis.url.clone(),
        password,
        connect_timeout: positive(
            "cluster.redis.connect_timeout",
            c.redis.connect_timeout.as_ref(),
            Duration::from_secs(1),
        )?,
        command_timeout: positive(
            "cluster.redis.command_timeout",
            c.redis.command_timeout.as_ref(),
            Duration::from_millis(200),
        )?,
        key_secret,
        stream,
        max_entries,
        shared_cache,
        rate_limits,
    })
}

/// A Redis key prefix: not empty, no spaces.
fn key_prefix(key: &str, given: Option<&String>, default: &str) -> Result<String> {
    let prefix = given.cloned().unwrap_or_else(|| default.into());
    if prefix.is_empty() || prefix.contains(char::is_whitespace) {
        return Err(ConfigError::at(
            key,
            "must be a non-empty Redis key prefix without spaces",
        ));
    }
    Ok(prefix)
}

pub(super) fn rate_limits(
    s: &crate::config::file::ClusterRateLimitsFile,
) -> Result<crate::cluster::RateLimitSettings> {
    let key_prefix = key_prefix(
        "cluster.rate_limits.key_prefix",
        s.key_prefix.as_ref(),
        "sessiongate:ratelimit",
    )?;
    let timeout = nonzero(
        "cluster.rate_limits.timeout",
        s.timeout.as_ref(),
        Duration::from_millis(50),
    )?;
    if timeout > Duration::from_secs(1) {
        return Err(ConfigError::at(
            "cluster.rate_limits.timeout",
            "at most 1s: every request on a limited route waits this long at worst while Redis hangs",
        ));
    }
    let replicas = match s.replicas {
        Some(0) => {
            return Err(ConfigError::at(
                "cluster.rate_limits.replicas",
                "must be at least 1 (the fallback divides every rate by it)",
            ))
        }
        Some(n) => n,
        None => 1,
    };
    Ok(crate::cluster::RateLimitSettings {
        key_prefix,
        timeout,
        replicas,
    })
}

pub(super) fn shared_cache(
    s: &crate::config::file::ClusterSharedCacheFile,
) -> Result<crate::cluster::SharedCacheSettings> {
    let positive = nonzero;
    let key_prefix = key_prefix(
        "cluster.shared_cache.key_prefix",
        s.key_prefix.as_ref(),
        "sessiongate:identities",
    )?;
    let timeout = positive(
        "cluster.shared_cache.timeout",
        s.timeout.as_ref(),
        Duration::from_millis(50),
    )?;
    let lock_wait = positive(
        "cluster.shared_cache.lock_wait",
        s.lock_wait.as_ref(),
        Duration::from_secs(1),
    )?;
    if lock_wait > Duration::from_secs(30) {
        return Err(ConfigError::at(
            "cluster.shared_cache.lock_wait",
            "at most 30s: a request waits this long at worst for another replica's provider call",
        ));
    }
    Ok(crate::cluster::SharedCacheSettings {
        key_prefix,
        timeout,
        lock_wait,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::validate::assert_error_paths;

    #[test]
    fn a_cluster_needs_redis_and_a_long_shared_secret() {
        let route = "routes:\n  - { path_prefix: /, auth: none, upstream: echo }\n";
        let secret = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo-cluster-secret");
        let table: Vec<(String, &[&str])> = vec![
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n"), &[]),
            (format!("cluster:\n  redis: {{ url: \"http://127.0.0.1:6379\" }}\n  key_secret_file: {secret}\n"), &["cluster.redis.url"]),
            ("cluster:\n  redis: { url: \"redis://127.0.0.1:6379/0\" }\n  key_secret_file: /nonexistent/secret\n".into(), &["cluster.key_secret"]),
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  shared_cache: {{ lock_wait: 5m }}\n"), &["cluster.shared_cache.lock_wait"]),
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  rate_limits: {{ timeout: 20ms, replicas: 3, key_prefix: \"rl\" }}\n"), &[]),
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  rate_limits: false\n"), &[]),
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  rate_limits: {{ timeout: 5s }}\n"), &["cluster.rate_limits.timeout"]),
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  rate_limits: {{ replicas: 0 }}\n"), &["cluster.rate_limits.replicas"]),
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  rate_limits: {{ key_prefix: \"a b\" }}\n"), &["cluster.rate_limits.key_prefix"]),
            (format!("cluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  rate_limits: {{ replica: 3 }}\n"), &["cluster.rate_limits"]),
            // Redis counts to the microsecond: a faster rate per key is refused there only.
            (format!("rate_limits:\n  fast: {{ rate: 2000000/s, key: client_address }}\ncluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n"), &["rate_limits.fast.rate"]),
            (format!("rate_limits:\n  fast: {{ rate: 2000000/s, key: client_address }}\ncluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n  rate_limits: false\n"), &[]),
            (format!("rate_limits:\n  fast: {{ rate: 1000000/s, key: client_address }}\ncluster:\n  redis: {{ url: \"redis://127.0.0.1:6379/0\" }}\n  key_secret_file: {secret}\n"), &[]),
        ];
        for (body, want) in &table {
            assert_error_paths(&format!("{body}{route}"), want);
        }
    }
}

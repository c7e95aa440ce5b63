//! Configuration: every setting has a TOML key and an `AUTHSOME_*` variable. Precedence: the
//! variable, then `<VARIABLE>_FILE` (its value read from that file, for secret stores), then the
//! TOML file (`--config` or `AUTHSOME_CONFIG`), then the default. Values are parsed into
//! [`Config`] at start-up; a bad one stops the process with a message naming the variable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use authsome_domain::master_key::MasterKey;
use authsome_domain::password::{self, Argon2Params, PasswordPolicy};

/// One configurable setting.
pub struct Setting {
    pub key: &'static str,
    pub env: &'static str,
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
}

/// Every setting `authsome` reads. The self-hosting guide's reference is generated from this list.
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "listen",
        env: "AUTHSOME_LISTEN",
        default: Some("127.0.0.1:8080"),
        secret: false,
        help: "Address and port the server listens on.",
    },
    Setting {
        key: "public_url",
        env: "AUTHSOME_PUBLIC_URL",
        default: None,
        secret: false,
        help: "Externally visible base URL (token issuer). Default: http://<listen>.",
    },
    Setting {
        key: "data_dir",
        env: "AUTHSOME_DATA_DIR",
        default: Some("./authsome-data"),
        secret: false,
        help: "Directory for the embedded database and the master key file.",
    },
    Setting {
        key: "database_url",
        env: "AUTHSOME_DATABASE_URL",
        default: None,
        secret: true,
        help: "Unset: SQLite under the data dir. postgres:// or postgresql://: Postgres.",
    },
    Setting {
        key: "redis_url",
        env: "AUTHSOME_REDIS_URL",
        default: None,
        secret: true,
        help: "Redis for state shared between replicas. Unset: in-process.",
    },
    Setting {
        key: "nats_url",
        env: "AUTHSOME_NATS_URL",
        default: None,
        secret: true,
        help: "NATS JetStream to carry durable jobs to workers. Unset: claimed from the database.",
    },
    Setting {
        key: "master_key",
        env: "AUTHSOME_MASTER_KEY",
        default: None,
        secret: true,
        help: "32 random bytes in base64. Unset: the key file that `init` creates in the data dir.",
    },
    Setting {
        key: "app_isolation",
        env: "AUTHSOME_APP_ISOLATION",
        default: Some("database"),
        secret: false,
        help: "Postgres only: `database` (one database per application) or `schema`.",
    },
    Setting {
        key: "log",
        env: "AUTHSOME_LOG",
        default: Some("info"),
        secret: false,
        help: "Log filter, e.g. `info` or `authsome=debug,sqlx=warn`.",
    },
    Setting {
        key: "log_format",
        env: "AUTHSOME_LOG_FORMAT",
        default: Some("pretty"),
        secret: false,
        help: "`pretty` or `json`.",
    },
    Setting {
        key: "bootstrap_email",
        env: "AUTHSOME_BOOTSTRAP_EMAIL",
        default: Some("owner@authsome.local"),
        secret: false,
        help: "Email of the break-glass owner that `init` creates.",
    },
    Setting {
        key: "bootstrap_password",
        env: "AUTHSOME_BOOTSTRAP_PASSWORD",
        default: None,
        secret: true,
        help: "Password for that owner. Unset: `init` generates one and prints it once.",
    },
    Setting {
        key: "max_body_bytes",
        env: "AUTHSOME_MAX_BODY_BYTES",
        default: Some("1048576"),
        secret: false,
        help: "Largest accepted request body in bytes.",
    },
    Setting {
        key: "dpop_require_nonce",
        env: "AUTHSOME_DPOP_REQUIRE_NONCE",
        default: Some("false"),
        secret: false,
        help: "`true`: every DPoP proof must carry a current server nonce (`DPoP-Nonce`).",
    },
    Setting {
        key: "upstream_connect_timeout_ms",
        env: "AUTHSOME_UPSTREAM_CONNECT_TIMEOUT_MS",
        default: Some("2000"),
        secret: false,
        help: "Dedicated applications: longest wait for a TCP connection to an instance.",
    },
    Setting {
        key: "upstream_timeout_ms",
        env: "AUTHSOME_UPSTREAM_TIMEOUT_MS",
        default: Some("30000"),
        secret: false,
        help: "Dedicated applications: longest wait for an instance's response head, per attempt (then 504).",
    },
    Setting {
        key: "upstream_health_interval_ms",
        env: "AUTHSOME_UPSTREAM_HEALTH_INTERVAL_MS",
        default: Some("2000"),
        secret: false,
        help: "Dedicated applications: how often each instance's `/health` is checked; two failures in a row take it out of rotation, one success brings it back.",
    },
    Setting {
        key: "upstream_allow",
        env: "AUTHSOME_UPSTREAM_ALLOW",
        default: None,
        secret: false,
        help: "Dedicated applications: where platform operators may point upstreams, as CIDRs, addresses and host names (`*.` for a suffix), comma-separated, checked after resolution and again at every connection. Loopback, link-local and metadata addresses and names are refused unless listed explicitly (`127.0.0.1/32`, not `0.0.0.0/0`). Unset: any other address.",
    },
    Setting {
        key: "vault_backend",
        env: "AUTHSOME_VAULT_BACKEND",
        default: Some("database"),
        secret: false,
        help: "Where the credential vault keeps its encrypted envelopes: `database` (the control plane's), or `redis` (AUTHSOME_REDIS_URL, under `<prefix>vault:<vaultId>:…`; envelopes only, never a key). A configured Redis that cannot be reached stops start-up; later it is a 503, never a fallback.",
    },
    Setting {
        key: "outbound_allow",
        env: "AUTHSOME_OUTBOUND_ALLOW",
        default: None,
        secret: false,
        help: "Outbound calls to URLs customers give (identity issuers' key sets for workload identity federation, OAuth token endpoints and credential endpoints of provider configurations): private, loopback, link-local and metadata addresses are refused unless listed here (CIDRs, addresses, host names, `*.` for a suffix; comma-separated). Public addresses are always allowed.",
    },
    Setting {
        key: "target_endpoints",
        env: "AUTHSOME_TARGET_ENDPOINTS",
        default: None,
        secret: false,
        help: "Where rotation's connectors call each provider instead of its public API (a proxy, a regional endpoint, a local fake): `provider=url` pairs, comma-separated, of vercel, netlify, render, cloudflare, fly, gcp, azure, aws. The calls still go through AUTHSOME_OUTBOUND_ALLOW.",
    },
    Setting {
        key: "stripe_secret_key",
        env: "AUTHSOME_STRIPE_SECRET_KEY",
        default: None,
        secret: true,
        help: "Stripe's secret key (`sk_…`): each paying workspace becomes a Stripe customer with a subscription, and each closed month's usage is sent as billing meter events (idempotent identifiers; kept and retried while Stripe cannot be reached). Unset: usage and invoices are still computed, and platform operators set payment standing by hand.",
    },
    Setting {
        key: "stripe_webhook_secret",
        env: "AUTHSOME_STRIPE_WEBHOOK_SECRET",
        default: None,
        secret: true,
        help: "The signing secret (`whsec_…`) of the Stripe webhook endpoint `/control/v1/billing/stripe/webhook`; unset: that route does not exist.",
    },
    Setting {
        key: "stripe_api_base",
        env: "AUTHSOME_STRIPE_API_BASE",
        default: None,
        secret: false,
        help: "Where Stripe's API is called instead of https://api.stripe.com (a proxy, or a local test server such as localstripe): the operator's own endpoint, called as configured like AUTHSOME_AWS_ENDPOINT; Stripe itself is called through AUTHSOME_OUTBOUND_ALLOW.",
    },
    Setting {
        key: "aws_endpoint",
        env: "AUTHSOME_AWS_ENDPOINT",
        default: None,
        secret: false,
        help: "Where AWS KMS is called (a VPC endpoint, or a local `moto_server`) instead of `https://kms.<region>.amazonaws.com`. KMS is called with the deployment's own AWS identity from the standard AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN variables; customers grant it their key in the key policy.",
    },
    Setting {
        key: "aws_region",
        env: "AUTHSOME_AWS_REGION",
        default: None,
        secret: false,
        help: "The region of KMS keys named without one (a key id or alias); a key ARN names its own. Unset: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1.",
    },
    Setting {
        key: "metrics_token",
        env: "AUTHSOME_METRICS_TOKEN",
        default: None,
        secret: true,
        help: "`/metrics` answers only requests with `Authorization: Bearer <this token>`. Unset: anyone who reaches it.",
    },
    Setting {
        key: "metrics_listen",
        env: "AUTHSOME_METRICS_LISTEN",
        default: None,
        secret: false,
        help: "Serve `/metrics` on this address:port only (e.g. a port only the scraper reaches) instead of on AUTHSOME_LISTEN.",
    },
    Setting {
        key: "smtp_url",
        env: "AUTHSOME_SMTP_URL",
        default: None,
        secret: true,
        help: "Mail relay for invitations: `smtp://host:port` (STARTTLS when offered; `?tls=required` to insist) or `smtps://host:port`, with `user:password@` if needed. Unset: invitation tokens go to the server log (target `authsome::invitations`) for the operators to relay.",
    },
    Setting {
        key: "smtp_from",
        env: "AUTHSOME_SMTP_FROM",
        default: Some("AuthSome <noreply@authsome.local>"),
        secret: false,
        help: "Sender of the mail the server sends.",
    },
    Setting {
        key: "session_ttl_seconds",
        env: "AUTHSOME_SESSION_TTL_SECONDS",
        default: Some("3600"),
        secret: false,
        help: "Lifetime of a team member's dashboard session token.",
    },
    Setting {
        key: "password_min_length",
        env: "AUTHSOME_PASSWORD_MIN_LENGTH",
        default: Some("8"),
        secret: false,
        help: "Shortest password an application user may choose (8-128).",
    },
    Setting {
        key: "password_check_common",
        env: "AUTHSOME_PASSWORD_CHECK_COMMON",
        default: Some("true"),
        secret: false,
        help: "Refuse passwords from the built-in offline list of common passwords.",
    },
    Setting {
        key: "password_denylist_path",
        env: "AUTHSOME_PASSWORD_DENYLIST_PATH",
        default: None,
        secret: false,
        help: "A file of further refused passwords, one per line (added to the built-in list).",
    },
    Setting {
        key: "argon2_memory_kib",
        env: "AUTHSOME_ARGON2_MEMORY_KIB",
        default: Some("19456"),
        secret: false,
        help: "argon2id memory cost for new password hashes, in KiB (OWASP: 19456).",
    },
    Setting {
        key: "argon2_iterations",
        env: "AUTHSOME_ARGON2_ITERATIONS",
        default: Some("2"),
        secret: false,
        help: "argon2id time cost (OWASP: 2).",
    },
    Setting {
        key: "argon2_parallelism",
        env: "AUTHSOME_ARGON2_PARALLELISM",
        default: Some("1"),
        secret: false,
        help: "argon2id lanes (OWASP: 1).",
    },
    Setting {
        key: "open_applications",
        env: "AUTHSOME_OPEN_APPLICATIONS",
        default: Some("512"),
        secret: false,
        help: "Application databases a process keeps open at once; the least recently used closes when another opens (pools idle for 5 minutes close anyway). Bounds memory whatever the number of applications: about 0.2 MiB per open SQLite application.",
    },
    Setting {
        key: "app_db_connections",
        env: "AUTHSOME_APP_DB_CONNECTIONS",
        default: Some("64"),
        secret: false,
        help: "On Postgres: connections all applications' pools together may hold, per process (each pool up to 4). Keep replicas x this under the server's `max_connections`, beside the control plane's pool.",
    },
    Setting {
        key: "hashing_memory_mib",
        env: "AUTHSOME_HASHING_MEMORY_MIB",
        default: Some("256"),
        secret: false,
        help: "Memory that password hashing may hold at once. The one hashing pool runs as many threads as there are cores and this fits argon2id hashes; beyond a short queue per application, sign-ins get 503 with `Retry-After` at once.",
    },
    Setting { key: "redis_prefix", env: "AUTHSOME_REDIS_PREFIX", default: Some("authsome:"), secret: false,
        help: "Prefix of every Redis key this deployment writes (several deployments can share a Redis)." },
    Setting {
        key: "redis_app_users",
        env: "AUTHSOME_REDIS_APP_USERS",
        default: Some("false"),
        secret: false,
        help: "`true` (Redis 6+): gateways create a Redis ACL user per dedicated application, confined to its keys, and `serve --app` connects as it.",
    },
    Setting {
        key: "shutdown_grace_seconds",
        env: "AUTHSOME_SHUTDOWN_GRACE_SECONDS",
        default: Some("30"),
        secret: false,
        help: "How long in-flight requests may run after SIGTERM.",
    },
    Setting {
        key: "header_timeout_seconds",
        env: "AUTHSOME_HEADER_TIMEOUT_SECONDS",
        default: Some("75"),
        secret: false,
        help: "A connection that goes this long without a complete request head (idle between requests, or sending slowly) is closed. Keep it above your load balancer's idle timeout (AWS ALB: 60 s).",
    },
    Setting {
        key: "worker_threads",
        env: "AUTHSOME_WORKER_THREADS",
        default: None,
        secret: false,
        help: "Threads that serve requests. Default: the CPUs available to the process. `1`: one thread and no work-stealing scheduler, the fastest for a replica limited to one CPU.",
    },
];

/// The settings as a Markdown table: variable, default, secret, meaning.
pub fn reference_markdown() -> String {
    let mut out = String::from("| Variable | Default | Secret | Meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            s.env,
            s.default
                .map(|d| format!("`{d}`"))
                .unwrap_or_else(|| "unset".into()),
            if s.secret { "yes" } else { "no" },
            s.help
        ));
    }
    out
}

/// A setting that failed, named by its variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

fn bad(var: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        var: var.to_owned(),
        message: message.into(),
    }
}

/// Where a value came from, for `authsome config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Env,
    File,
    Toml,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Env => "environment",
            Source::File => "_FILE",
            Source::Toml => "config file",
            Source::Default => "default",
        }
    }
}

/// Raw values after precedence, before parsing.
pub struct RawConfig {
    pub values: BTreeMap<&'static str, (String, Source)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppIsolation {
    Database,
    Schema,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub redis_url: Option<url::Url>,
    pub nats_url: Option<url::Url>,
    pub master_key: Option<MasterKey>,
    pub app_isolation: AppIsolation,
    pub log: String,
    pub log_format: LogFormat,
    pub bootstrap_email: String,
    pub bootstrap_password: Option<String>,
    pub max_body_bytes: usize,
    pub session_ttl_seconds: i64,
    pub shutdown_grace_seconds: u64,
    pub header_timeout_seconds: u64,
    /// `None`: one per available CPU.
    pub worker_threads: Option<usize>,
    pub password_policy: PasswordPolicy,
    pub hashing_memory_mib: u64,
    pub open_applications: usize,
    pub app_db_connections: u32,
    pub redis_prefix: String,
    pub dpop_require_nonce: bool,
    pub redis_app_users: bool,
    pub proxy: authsome_gateway::proxy::ProxySettings,
    pub metrics_token: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
    pub smtp_url: Option<url::Url>,
    pub smtp_from: String,
    /// Where outbound calls to URLs customers give may go besides public addresses.
    pub outbound: authsome_domain::egress::EgressPolicy,
    /// `AUTHSOME_VAULT_BACKEND=redis`: the vault's envelopes in Redis.
    pub vault_in_redis: bool,
    /// `AUTHSOME_AWS_ENDPOINT`: where KMS is called instead of AWS's regional endpoint.
    pub aws_endpoint: Option<String>,
    pub aws_region: Option<String>,
    pub target_endpoints: authsome_connect::targets::Endpoints,
    pub stripe: authsome_connect::stripe::StripeSettings,
}

impl Config {
    pub fn is_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    }

    pub fn master_key_file(&self) -> PathBuf {
        self.data_dir.join("master.key")
    }
}

/// Reads the environment and the optional TOML file into raw values.
pub fn gather(
    config_file: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RawConfig, ConfigError> {
    let config_file = config_file
        .map(Path::to_path_buf)
        .or_else(|| env("AUTHSOME_CONFIG").map(PathBuf::from));
    let mut toml_values: BTreeMap<String, String> = BTreeMap::new();
    if let Some(path) = &config_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            bad(
                "AUTHSOME_CONFIG",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| bad("AUTHSOME_CONFIG", format!("{}: {e}", path.display())))?;
        for (key, value) in table {
            if !SETTINGS.iter().any(|s| s.key == key) {
                return Err(bad(
                    "AUTHSOME_CONFIG",
                    format!("unknown setting `{key}` in {}", path.display()),
                ));
            }
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(bad(
                        "AUTHSOME_CONFIG",
                        format!(
                            "`{key}` must be a string or number, not {}",
                            other.type_str()
                        ),
                    ))
                }
            };
            toml_values.insert(key, value);
        }
    }
    let mut values = BTreeMap::new();
    for setting in SETTINGS {
        let file_var = format!("{}_FILE", setting.env);
        let direct = env(setting.env).filter(|v| !v.is_empty());
        let indirect = env(&file_var).filter(|v| !v.is_empty());
        let chosen = match (direct, indirect) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    setting.env,
                    format!("set either {} or {file_var}, not both", setting.env),
                ))
            }
            (Some(v), None) => Some((v, Source::Env)),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| bad(&file_var, format!("cannot read {path}: {e}")))?;
                Some((text.trim_end_matches(['\n', '\r']).to_owned(), Source::File))
            }
            (None, None) => toml_values
                .remove(setting.key)
                .map(|v| (v, Source::Toml))
                .or_else(|| setting.default.map(|d| (d.to_owned(), Source::Default))),
        };
        if let Some(v) = chosen {
            values.insert(setting.env, v);
        }
    }
    Ok(RawConfig { values })
}

impl RawConfig {
    fn get(&self, var: &str) -> Option<&str> {
        self.values.get(var).map(|(v, _)| v.as_str())
    }

    /// Parses and validates every value.
    pub fn parse(&self) -> Result<Config, ConfigError> {
        let listen_raw = self.get("AUTHSOME_LISTEN").unwrap_or("127.0.0.1:8080");
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            bad(
                "AUTHSOME_LISTEN",
                format!("`{listen_raw}` is not an address:port"),
            )
        })?;
        let public_url = match self.get("AUTHSOME_PUBLIC_URL") {
            Some(u) => {
                let parsed = url::Url::parse(u)
                    .map_err(|e| bad("AUTHSOME_PUBLIC_URL", format!("`{u}`: {e}")))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
                    return Err(bad("AUTHSOME_PUBLIC_URL", "must be an http(s) URL"));
                }
                u.trim_end_matches('/').to_owned()
            }
            None => format!("http://{listen}"),
        };
        let data_dir = PathBuf::from(self.get("AUTHSOME_DATA_DIR").unwrap_or("./authsome-data"));
        let database_url = self.get("AUTHSOME_DATABASE_URL").map(str::to_owned);
        if let Some(u) = &database_url {
            let scheme_ok = ["postgres://", "postgresql://", "sqlite:"]
                .iter()
                .any(|p| u.starts_with(p));
            if !scheme_ok || url::Url::parse(u).is_err() {
                return Err(bad(
                    "AUTHSOME_DATABASE_URL",
                    "must be a postgres://, postgresql:// or sqlite: URL",
                ));
            }
        }
        let service_url = |var: &str, schemes: &[&str]| -> Result<Option<url::Url>, ConfigError> {
            self.get(var)
                .map(|u| {
                    let parsed = url::Url::parse(u).map_err(|e| bad(var, e.to_string()))?;
                    if !schemes.contains(&parsed.scheme()) || parsed.host().is_none() {
                        return Err(bad(var, format!("must be a {} URL", schemes.join("/"))));
                    }
                    Ok(parsed)
                })
                .transpose()
        };
        let redis_url = service_url("AUTHSOME_REDIS_URL", &["redis", "rediss"])?;
        let vault_in_redis = match self.get("AUTHSOME_VAULT_BACKEND").unwrap_or("database") {
            "database" => false,
            "redis" if redis_url.is_some() => true,
            "redis" => {
                return Err(bad(
                    "AUTHSOME_VAULT_BACKEND",
                    "`redis` needs AUTHSOME_REDIS_URL".to_owned(),
                ))
            }
            other => {
                return Err(bad(
                    "AUTHSOME_VAULT_BACKEND",
                    format!("must be `database` or `redis`, not `{other}`"),
                ))
            }
        };
        let smtp_url = service_url("AUTHSOME_SMTP_URL", &["smtp", "smtps"])?;
        let smtp_from = self
            .get("AUTHSOME_SMTP_FROM")
            .unwrap_or("AuthSome <noreply@authsome.local>")
            .to_owned();
        if let Some(url) = &smtp_url {
            use authsome_server::mail::{MailSetupError, SmtpMailer};
            SmtpMailer::new(url.as_str(), &smtp_from).map_err(|e| match e {
                MailSetupError::Url(_) => bad("AUTHSOME_SMTP_URL", e.to_string()),
                MailSetupError::Sender(_) => bad("AUTHSOME_SMTP_FROM", e.to_string()),
            })?;
        }
        let nats_url = service_url("AUTHSOME_NATS_URL", &["nats", "tls"])?;
        let master_key = self
            .get("AUTHSOME_MASTER_KEY")
            .map(|k| {
                MasterKey::from_base64(k).map_err(|e| bad("AUTHSOME_MASTER_KEY", e.to_string()))
            })
            .transpose()?;
        let app_isolation = match self.get("AUTHSOME_APP_ISOLATION").unwrap_or("database") {
            "database" => AppIsolation::Database,
            "schema" => AppIsolation::Schema,
            other => {
                return Err(bad(
                    "AUTHSOME_APP_ISOLATION",
                    format!("`{other}` is not `database` or `schema`"),
                ))
            }
        };
        let log_format = match self.get("AUTHSOME_LOG_FORMAT").unwrap_or("pretty") {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "AUTHSOME_LOG_FORMAT",
                    format!("`{other}` is not `pretty` or `json`"),
                ))
            }
        };
        let log = self.get("AUTHSOME_LOG").unwrap_or("info").to_owned();
        tracing_subscriber::EnvFilter::try_new(&log)
            .map_err(|e| bad("AUTHSOME_LOG", e.to_string()))?;
        let bootstrap_email = self
            .get("AUTHSOME_BOOTSTRAP_EMAIL")
            .unwrap_or("owner@authsome.local");
        let bootstrap_email = authsome_domain::tenancy::member::parse_email(bootstrap_email)
            .map_err(|_| bad("AUTHSOME_BOOTSTRAP_EMAIL", "must be a valid email address"))?;
        let bootstrap_password = self.get("AUTHSOME_BOOTSTRAP_PASSWORD").map(str::to_owned);
        if let Some(p) = &bootstrap_password {
            authsome_domain::password::check_policy(p)
                .map_err(|e| bad("AUTHSOME_BOOTSTRAP_PASSWORD", e.to_string()))?;
        }
        let number = |var: &str, min: u64, max: u64| -> Result<u64, ConfigError> {
            let raw = self.get(var).unwrap_or("0");
            raw.parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| {
                    bad(
                        var,
                        format!("`{raw}` is not a whole number in {min}..={max}"),
                    )
                })
        };
        let flag = |var: &str| -> Result<bool, ConfigError> {
            match self.get(var).unwrap_or("false") {
                "true" | "1" | "yes" => Ok(true),
                "false" | "0" | "no" => Ok(false),
                _ => Err(bad(var, "must be true or false")),
            }
        };
        let config = Config {
            listen,
            public_url,
            data_dir,
            database_url,
            redis_url,
            nats_url,
            master_key,
            app_isolation,
            log,
            log_format,
            bootstrap_email,
            bootstrap_password,
            max_body_bytes: number("AUTHSOME_MAX_BODY_BYTES", 1024, 64 * 1024 * 1024)? as usize,
            session_ttl_seconds: number("AUTHSOME_SESSION_TTL_SECONDS", 60, 7 * 24 * 3600)? as i64,
            shutdown_grace_seconds: number("AUTHSOME_SHUTDOWN_GRACE_SECONDS", 0, 3600)?,
            header_timeout_seconds: number("AUTHSOME_HEADER_TIMEOUT_SECONDS", 1, 3600)?,
            worker_threads: match self.get("AUTHSOME_WORKER_THREADS") {
                Some(_) => Some(number("AUTHSOME_WORKER_THREADS", 1, 1024)? as usize),
                None => None,
            },
            password_policy: self.password_policy(&number)?,
            hashing_memory_mib: number("AUTHSOME_HASHING_MEMORY_MIB", 16, 1024 * 1024)?,
            open_applications: number("AUTHSOME_OPEN_APPLICATIONS", 1, 1_000_000)? as usize,
            app_db_connections: number("AUTHSOME_APP_DB_CONNECTIONS", 1, 100_000)? as u32,
            redis_prefix: self
                .get("AUTHSOME_REDIS_PREFIX")
                .unwrap_or("authsome:")
                .to_owned(),
            dpop_require_nonce: flag("AUTHSOME_DPOP_REQUIRE_NONCE")?,
            redis_app_users: flag("AUTHSOME_REDIS_APP_USERS")?,
            proxy: authsome_gateway::proxy::ProxySettings {
                connect_timeout: Duration::from_millis(number(
                    "AUTHSOME_UPSTREAM_CONNECT_TIMEOUT_MS",
                    10,
                    60_000,
                )?),
                response_timeout: Duration::from_millis(number(
                    "AUTHSOME_UPSTREAM_TIMEOUT_MS",
                    10,
                    600_000,
                )?),
                health_interval: Duration::from_millis(number(
                    "AUTHSOME_UPSTREAM_HEALTH_INTERVAL_MS",
                    50,
                    60_000,
                )?),
                unhealthy_after: 2,
                policy: authsome_domain::egress::EgressPolicy::parse(
                    self.get("AUTHSOME_UPSTREAM_ALLOW").unwrap_or_default(),
                )
                .map_err(|e| bad("AUTHSOME_UPSTREAM_ALLOW", e.to_string()))?,
            },
            smtp_url,
            vault_in_redis,
            aws_endpoint: service_url("AUTHSOME_AWS_ENDPOINT", &["http", "https"])?
                .map(|u| u.to_string()),
            aws_region: self.get("AUTHSOME_AWS_REGION").map(str::to_owned),
            stripe: authsome_connect::stripe::StripeSettings {
                secret_key: self
                    .get("AUTHSOME_STRIPE_SECRET_KEY")
                    .map(|k| zeroize::Zeroizing::new(k.to_owned())),
                webhook_secret: self
                    .get("AUTHSOME_STRIPE_WEBHOOK_SECRET")
                    .map(|k| zeroize::Zeroizing::new(k.to_owned())),
                api_base: service_url("AUTHSOME_STRIPE_API_BASE", &["http", "https"])?
                    .map(|u| u.as_str().trim_end_matches('/').to_owned()),
            },
            target_endpoints: authsome_connect::targets::Endpoints::default()
                .with_overrides(self.get("AUTHSOME_TARGET_ENDPOINTS").unwrap_or_default())
                .map_err(|e| bad("AUTHSOME_TARGET_ENDPOINTS", e))?,
            outbound: authsome_domain::egress::EgressPolicy::public_with(
                self.get("AUTHSOME_OUTBOUND_ALLOW").unwrap_or_default(),
            )
            .map_err(|e| bad("AUTHSOME_OUTBOUND_ALLOW", e.to_string()))?,
            smtp_from,
            metrics_token: self.get("AUTHSOME_METRICS_TOKEN").map(str::to_owned),
            metrics_listen: self
                .get("AUTHSOME_METRICS_LISTEN")
                .map(|raw| {
                    raw.parse().map_err(|_| {
                        bad(
                            "AUTHSOME_METRICS_LISTEN",
                            format!("`{raw}` is not an address:port"),
                        )
                    })
                })
                .transpose()?,
        };
        if config.redis_app_users && config.redis_url.is_none() {
            return Err(bad(
                "AUTHSOME_REDIS_APP_USERS",
                "needs AUTHSOME_REDIS_URL (the users live in that Redis)",
            ));
        }
        if config.app_isolation == AppIsolation::Schema && !config.is_postgres() {
            return Err(bad(
                "AUTHSOME_APP_ISOLATION",
                "`schema` needs AUTHSOME_DATABASE_URL to be a Postgres URL",
            ));
        }
        Ok(config)
    }

    fn password_policy(
        &self,
        number: &dyn Fn(&str, u64, u64) -> Result<u64, ConfigError>,
    ) -> Result<PasswordPolicy, ConfigError> {
        let argon2 = Argon2Params {
            memory_kib: number("AUTHSOME_ARGON2_MEMORY_KIB", 7168, 1024 * 1024)? as u32,
            iterations: number("AUTHSOME_ARGON2_ITERATIONS", 1, 10)? as u32,
            parallelism: number("AUTHSOME_ARGON2_PARALLELISM", 1, 16)? as u32,
        }
        .validate()
        .map_err(|m| bad("AUTHSOME_ARGON2_MEMORY_KIB", m))?;
        let check_common = match self.get("AUTHSOME_PASSWORD_CHECK_COMMON").unwrap_or("true") {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => {
                return Err(bad(
                    "AUTHSOME_PASSWORD_CHECK_COMMON",
                    format!("`{other}` is not true or false"),
                ))
            }
        };
        let mut denylist = if check_common {
            password::common_passwords()
        } else {
            Default::default()
        };
        if let Some(path) = self.get("AUTHSOME_PASSWORD_DENYLIST_PATH") {
            let text = std::fs::read_to_string(path).map_err(|e| {
                bad(
                    "AUTHSOME_PASSWORD_DENYLIST_PATH",
                    format!("cannot read {path}: {e}"),
                )
            })?;
            denylist.extend(password::parse_password_list(&text));
        }
        Ok(PasswordPolicy {
            min_length: number("AUTHSOME_PASSWORD_MIN_LENGTH", 8, 128)? as usize,
            denylist: (!denylist.is_empty()).then(|| std::sync::Arc::new(denylist)),
            argon2,
        })
    }

    /// `VARIABLE = value  # source` lines, secrets redacted.
    pub fn describe(&self) -> Vec<(String, String, &'static str)> {
        SETTINGS
            .iter()
            .map(|s| match self.values.get(s.env) {
                Some((value, source)) => {
                    let shown = if s.secret {
                        redact(value)
                    } else {
                        value.clone()
                    };
                    (s.env.to_owned(), shown, source.as_str())
                }
                None => (s.env.to_owned(), String::new(), "unset"),
            })
            .collect()
    }
}

/// Secrets are hidden; URLs keep their scheme, host and path but lose their credentials.
fn redact(value: &str) -> String {
    match url::Url::parse(value) {
        Ok(mut u) if u.has_host() => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("***");
                let _ = u.set_password(None);
            }
            u.set_query(None);
            u.to_string()
        }
        _ => "***".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_parse() {
        let c = gather(None, &env_of(&[])).unwrap().parse().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert!(!c.is_postgres());
        assert_eq!(c.shutdown_grace_seconds, 30);
        assert_eq!(c.worker_threads, None);
        assert_eq!(c.header_timeout_seconds, 75);
        let one = gather(None, &env_of(&[("AUTHSOME_WORKER_THREADS", "1")]))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(one.worker_threads, Some(1));
    }

    #[test]
    fn env_beats_file_indirection_and_toml() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("c.toml");
        std::fs::write(&toml, "listen = \"127.0.0.1:9000\"\nlog = \"debug\"\n").unwrap();
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "a-long-enough-password\n").unwrap();
        let raw = gather(
            Some(&toml),
            &env_of(&[
                ("AUTHSOME_LOG", "warn"),
                ("AUTHSOME_BOOTSTRAP_PASSWORD_FILE", secret.to_str().unwrap()),
            ]),
        )
        .unwrap();
        let c = raw.parse().unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.log, "warn");
        assert_eq!(
            c.bootstrap_password.as_deref(),
            Some("a-long-enough-password")
        );
        let described = raw.describe();
        let pw = described
            .iter()
            .find(|(k, _, _)| k == "AUTHSOME_BOOTSTRAP_PASSWORD")
            .unwrap();
        assert_eq!((pw.1.as_str(), pw.2), ("***", "_FILE"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("AUTHSOME_LISTEN", "nope"),
            ("AUTHSOME_DATABASE_URL", "mysql://x"),
            ("AUTHSOME_REDIS_URL", "http://x"),
            ("AUTHSOME_MASTER_KEY", "c2hvcnQ="),
            ("AUTHSOME_APP_ISOLATION", "schema"),
            ("AUTHSOME_LOG_FORMAT", "xml"),
            ("AUTHSOME_MAX_BODY_BYTES", "-1"),
            ("AUTHSOME_PUBLIC_URL", "ftp://x"),
            ("AUTHSOME_BOOTSTRAP_EMAIL", "nobody"),
            ("AUTHSOME_ARGON2_MEMORY_KIB", "1024"),
            ("AUTHSOME_PASSWORD_MIN_LENGTH", "4"),
            ("AUTHSOME_PASSWORD_CHECK_COMMON", "maybe"),
            ("AUTHSOME_PASSWORD_DENYLIST_PATH", "/nonexistent/list.txt"),
            ("AUTHSOME_WORKER_THREADS", "0"),
            ("AUTHSOME_HEADER_TIMEOUT_SECONDS", "0"),
            ("AUTHSOME_VAULT_BACKEND", "s3"),
            ("AUTHSOME_VAULT_BACKEND", "redis"),
            ("AUTHSOME_OUTBOUND_ALLOW", "not a network!"),
            ("AUTHSOME_TARGET_ENDPOINTS", "render"),
            ("AUTHSOME_TARGET_ENDPOINTS", "heroku=https://api.heroku.com"),
            ("AUTHSOME_TARGET_ENDPOINTS", "render=ftp://x"),
        ] {
            let err = gather(None, &env_of(&[(var, value)]))
                .and_then(|r| r.parse())
                .unwrap_err();
            assert_eq!(err.var, var, "{value}");
            assert!(err.to_string().starts_with(&format!("invalid {var}: ")));
        }
        let err = gather(
            None,
            &env_of(&[("AUTHSOME_LOG", "x"), ("AUTHSOME_LOG_FILE", "/nonexistent")]),
        )
        .err()
        .unwrap();
        assert_eq!(err.var, "AUTHSOME_LOG");
    }

    #[test]
    fn redaction_hides_credentials() {
        assert_eq!(
            redact("postgres://u:pw@db:5432/x"),
            "postgres://***@db:5432/x"
        );
        assert_eq!(redact("hunter2hunter2"), "***");
    }
}

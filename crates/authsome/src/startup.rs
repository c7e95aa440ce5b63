//! Start-up and the commands that need storage: opening the database, applying migrations,
//! checking the master key, serving with graceful shutdown, and `init`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use authsome_control::{BootstrapResult, ControlPlane, ControlSettings};
use authsome_domain::master_key::MasterKey;
use authsome_server::HttpSettings;
use authsome_storage::Store;
use tokio::net::TcpListener;

use authsome_storage::app::AppDatabaseConfig;

use crate::config::{AppIsolation, Config, LogFormat};

const MASTER_KEY_CHECK: &str = "master_key_check";

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Creates the data directory for this user only (0700), or warns when an existing one is open
/// to others: it holds the master key and every embedded database.
fn ensure_data_dir(config: &Config) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        if let Ok(meta) = std::fs::metadata(&config.data_dir) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %config.data_dir.display(),
                    mode = format!("{mode:o}"),
                    "AUTHSOME_DATA_DIR is open to other users; it holds the master key and the \
                     databases: chmod 700 it"
                );
            }
        }
    }
    builder.create(&config.data_dir).with_context(|| {
        format!(
            "AUTHSOME_DATA_DIR {} cannot be created",
            config.data_dir.display()
        )
    })?;
    let probe = config.data_dir.join(".write-test");
    std::fs::write(&probe, b"ok").with_context(|| {
        format!(
            "AUTHSOME_DATA_DIR {} is not writable",
            config.data_dir.display()
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The master key from AUTHSOME_MASTER_KEY or the key file; `create` makes the file if missing.
fn master_key(config: &Config, create: bool) -> Result<MasterKey> {
    if let Some(key) = &config.master_key {
        return Ok(key.clone());
    }
    let path = config.master_key_file();
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::from_base64(&text)
            .map_err(|e| anyhow!("the master key file {} is invalid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let key = MasterKey::generate();
            write_secret_file(&path, &key.to_base64())
                .with_context(|| format!("cannot write the master key file {}", path.display()))?;
            tracing::info!(path = %path.display(), "created a new master key file");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "AUTHSOME_MASTER_KEY is not set and there is no key file at {}: run `authsome init` \
             or give every replica the same AUTHSOME_MASTER_KEY",
            path.display()
        ),
        Err(e) => Err(anyhow!(
            "cannot read the master key file {}: {e}",
            path.display()
        )),
    }
}

fn write_secret_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()
}

/// Checks that a configured service answers on its port; a clear error instead of a fallback.
async fn reachable(var: &str, url: &url::Url, default_port: u16) -> Result<()> {
    let host = url.host_str().unwrap_or("localhost").to_owned();
    let port = url.port().unwrap_or(default_port);
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("{var}: cannot reach {host}:{port}: {e}"),
        Err(_) => bail!("{var}: timed out connecting to {host}:{port}"),
    }
}

/// Opens the control-plane database, applies migrations, and checks the master key against it.
async fn open_store(config: &Config, create_key: bool) -> Result<(Arc<dyn Store>, MasterKey)> {
    if !config.is_postgres() {
        ensure_data_dir(config)?;
    }
    let key = master_key(config, create_key)?;
    let store = authsome_storage::connect(config.database_url.as_deref(), &config.data_dir)
        .await
        .context("AUTHSOME_DATABASE_URL: cannot open the database")?;
    store
        .migrate()
        .await
        .context("AUTHSOME_DATABASE_URL: migrations failed")?;
    match store.setting(MASTER_KEY_CHECK).await? {
        Some(check) => key.verify_check_value(&check).map_err(|_| {
            anyhow!(
                "AUTHSOME_MASTER_KEY does not match the key this database was initialised with \
                 (cannot decrypt existing data)"
            )
        })?,
        None => {
            store
                .put_setting_if_absent(MASTER_KEY_CHECK, &key.check_value())
                .await?;
        }
    }
    Ok((store, key))
}

/// The control plane of the commands that need no server (`init`).
fn control_plane(config: &Config, store: Arc<dyn Store>) -> ControlPlane {
    ControlPlane::new(
        store,
        ControlSettings {
            session_ttl: chrono::Duration::seconds(config.session_ttl_seconds),
            public_url: config.public_url.clone(),
            ..ControlSettings::default()
        },
    )
}

fn mailer(config: &Config) -> Result<Option<Arc<dyn authsome_control::mail::Mailer>>> {
    let Some(url) = &config.smtp_url else {
        return Ok(None);
    };
    let mailer = authsome_server::mail::SmtpMailer::new(url.as_str(), &config.smtp_from)
        .map_err(|e| anyhow!("AUTHSOME_SMTP_URL: {e}"))?;
    Ok(Some(Arc::new(mailer)))
}

/// Every application in a database of its own next to the control plane's (or a schema).
fn app_databases(config: &Config) -> AppDatabaseConfig {
    match (&config.database_url, config.app_isolation) {
        (Some(url), AppIsolation::Schema) if config.is_postgres() => {
            AppDatabaseConfig::PostgresSchema {
                server_url: url.clone(),
            }
        }
        (Some(url), AppIsolation::Database) if config.is_postgres() => {
            AppDatabaseConfig::Postgres {
                server_url: url.clone(),
            }
        }
        // Configuration validation allows `schema` only with Postgres.
        _ => AppDatabaseConfig::Sqlite {
            dir: config.data_dir.join("apps"),
        },
    }
}

pub async fn serve(config: Config, only_app: Option<String>) -> Result<()> {
    init_logging(&config);
    let only_app = only_app
        .map(|id| {
            authsome_domain::id::ApplicationId::parse(&id)
                .map_err(|_| anyhow::anyhow!("--app: `{id}` is not an application id (app_…)"))
        })
        .transpose()?;
    if let Some(url) = &config.redis_url {
        reachable("AUTHSOME_REDIS_URL", url, 6379).await?;
    }
    if let Some(url) = &config.nats_url {
        reachable("AUTHSOME_NATS_URL", url, 4222).await?;
    }
    if let Some(url) = &config.smtp_url {
        let port = if url.scheme() == "smtps" { 465 } else { 587 };
        reachable("AUTHSOME_SMTP_URL", url, port).await?;
    }
    // Embedded mode makes its own key on first start; a shared database needs the one key that
    // every replica is given.
    let (store, master_key) = open_store(&config, !config.is_postgres()).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("AUTHSOME_LISTEN: cannot listen on {}", config.listen))?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("AUTHSOME_METRICS_LISTEN: cannot listen on {address}"))?,
        ),
        None => None,
    };
    let app = authsome_server::App::build(settings(&config, store, master_key, only_app.clone())?)
        .await?;
    let state = app.state.clone();
    if let Some(app) = &only_app {
        // An instance of an application that does not exist would only ever answer 404.
        state
            .control
            .public_application(app.as_str())
            .await
            .map_err(|_| anyhow::anyhow!("--app: application {app} not found"))?;
    }
    app.start();
    let router = authsome_server::router(state.clone());
    let local = listener.local_addr()?;
    match &only_app {
        Some(only) => tracing::info!(address = %local, app = %only, "authsome instance listening"),
        None => {
            tracing::info!(address = %local, public_url = %config.public_url, "authsome listening")
        }
    }

    let shutdown = Arc::new(tokio::sync::Notify::new());
    let signalled = {
        let shutdown = shutdown.clone();
        let state = state.clone();
        async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received; draining");
            state.start_draining();
            shutdown.notify_waiters();
        }
    };
    if let Some(metrics_listener) = metrics_listener {
        let router = authsome_server::metrics_router(state.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stopped = async move { shutdown.notified().await };
            if let Err(e) = axum::serve(metrics_listener, router)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let grace = Duration::from_secs(config.shutdown_grace_seconds);
    let server = authsome_server::serve(listener, state.clone(), router, signalled);
    let drained = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.notified().await;
            tokio::time::sleep(grace).await;
        }
    };
    tokio::select! {
        () = server => {}
        _ = drained => tracing::warn!("drain period elapsed with requests still in flight"),
    }
    // Requests that were in flight at the signal may have batched more: written now.
    app.stop().await;
    tracing::info!("stopped");
    Ok(())
}

/// What `serve` is made of, from the configuration.
fn settings(
    config: &Config,
    store: Arc<dyn Store>,
    master_key: MasterKey,
    only_app: Option<authsome_domain::id::ApplicationId>,
) -> Result<authsome_server::Settings> {
    let mut settings =
        authsome_server::Settings::new(store, app_databases(config), config.public_url.clone());
    settings.master_key = master_key;
    settings.control.session_ttl = chrono::Duration::seconds(config.session_ttl_seconds);
    settings.password_policy = config.password_policy.clone();
    settings.hashing_memory_kib = config.hashing_memory_mib * 1024;
    settings.open_applications = config.open_applications;
    settings.app_db_connections = config.app_db_connections;
    settings.mailer = mailer(config)?;
    settings.outbound = config.outbound.clone();
    settings.vault_in_redis = config.vault_in_redis;
    settings.jobs = config
        .nats_url
        .as_ref()
        .map(|url| authsome_nats::JetStreamSettings::new(url.as_str()));
    settings.targets = config.target_endpoints.clone();
    settings.stripe = config.stripe.clone();
    settings.aws = authsome_connect::aws::AwsSettings::from_env(
        config.aws_endpoint.clone(),
        config.aws_region.clone(),
    );
    settings.http = HttpSettings {
        max_body_bytes: config.max_body_bytes,
        dpop_require_nonce: config.dpop_require_nonce,
        proxy: config.proxy.clone(),
        only_app,
        header_read_timeout: Duration::from_secs(config.header_timeout_seconds),
        metrics_token: config.metrics_token.clone(),
        metrics_elsewhere: config.metrics_listen.is_some(),
    };
    settings.shared = match &config.redis_url {
        Some(url) => authsome_server::SharedState::Redis {
            url: url.clone(),
            prefix: config.redis_prefix.clone(),
            app_users: config.redis_app_users,
        },
        None => authsome_server::SharedState::InProcess,
    };
    Ok(settings)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

pub async fn migrate(config: Config) -> Result<()> {
    init_logging(&config);
    if !config.is_postgres() {
        ensure_data_dir(&config)?;
    }
    let store = authsome_storage::connect(config.database_url.as_deref(), &config.data_dir)
        .await
        .context("AUTHSOME_DATABASE_URL: cannot open the database")?;
    store
        .migrate()
        .await
        .context("AUTHSOME_DATABASE_URL: migrations failed")?;
    println!("migrations applied");
    Ok(())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct InitOutput {
    workspace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_password: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    management_key: Option<String>,
}

pub async fn init(config: Config, json: bool) -> Result<()> {
    init_logging(&config);
    ensure_data_dir(&config)?;
    let (store, _) = open_store(&config, true).await?;
    let control = control_plane(&config, store);
    let result = control
        .bootstrap(&config.bootstrap_email, config.bootstrap_password.clone())
        .await
        .map_err(|e| anyhow!("init failed: {e}"))?;
    match result {
        BootstrapResult::Created {
            workspace_id,
            owner_email,
            password,
            management_key,
        } => {
            if json {
                let out = InitOutput {
                    workspace_id: workspace_id.to_string(),
                    owner_email: Some(owner_email),
                    owner_password: password,
                    management_key: Some(management_key),
                };
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!("AuthSome initialised. Store these now: they are not shown again.");
                println!("  root workspace:  {workspace_id}");
                println!("  owner email:     {owner_email}");
                match password {
                    Some(p) => println!("  owner password:  {p}"),
                    None => println!("  owner password:  (from AUTHSOME_BOOTSTRAP_PASSWORD)"),
                }
                println!("  management key:  {management_key}");
            }
        }
        BootstrapResult::AlreadyDone {
            workspace_id,
            owner_email,
        } => {
            if json {
                let out = InitOutput {
                    workspace_id: workspace_id.to_string(),
                    owner_email,
                    owner_password: None,
                    management_key: None,
                };
                println!("{}", serde_json::to_string(&out)?);
            } else {
                println!("Already initialised (root workspace {workspace_id}); nothing changed.");
            }
        }
    }
    Ok(())
}

/// Probes `/health` over plain HTTP/1.1 with std only, so the container image needs no curl.
pub async fn healthcheck(config: Config, url: Option<String>) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server listening on every interface (0.0.0.0, as in the container) answers on loopback.
    let mut probe_addr = config.listen;
    if probe_addr.ip().is_unspecified() {
        probe_addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let base = url.unwrap_or_else(|| format!("http://{probe_addr}"));
    let parsed = url::Url::parse(&base).context("--url is not a URL")?;
    if parsed.scheme() != "http" {
        bail!("--url must be http:// (the probe runs inside the container)");
    }
    let host = parsed.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = parsed.port().unwrap_or(80);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
        let request = format!("GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .context("health check timed out")??;
    let status_line = String::from_utf8_lossy(&response);
    if status_line.starts_with("HTTP/1.1 200") {
        println!("ok");
        Ok(())
    } else {
        bail!(
            "unhealthy: {}",
            status_line.lines().next().unwrap_or("no response")
        )
    }
}

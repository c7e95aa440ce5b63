//! `spawn_app()`: a fresh database, the root workspace bootstrapped, the real router served on
//! 127.0.0.1:0. Plus small helpers to make tenants and call the API.

use std::sync::Arc;

use authsome_control::{BootstrapResult, ControlPlane, ControlSettings};
use authsome_domain::master_key::MasterKey;
use authsome_server::{App, AppState, HttpSettings, Settings, SharedState};
use authsome_storage::app::AppDatabaseConfig;
use authsome_storage::{PostgresStore, SqliteStore, Store, SystemRepository};
use reqwest::Method;
use serde_json::{json, Value};

/// The `User-Agent` of every request a [`TestApp`] sends.
pub const USER_AGENT: &str = "authsome-tests/1 (api)";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub root_ws: String,
    pub root_email: String,
    pub root_password: String,
    /// The bootstrap management key of the root workspace (admin role).
    pub root_key: String,
    /// Where application databases live (SQLite runs only).
    pub apps_dir: Option<std::path::PathBuf>,
    /// The control-plane database (`sqlite://…` or `postgres://…`), for tests that must reach
    /// past the API (tampering with stored rows).
    pub db_url: String,
    /// The time the server decides by: moved forward by a test instead of sleeping.
    pub clock: authsome_domain::clock::Clock,
    /// Where the vault keeps envelopes when they are in Redis.
    pub vault_redis: Option<VaultRedis>,
    _guard: Box<dyn std::any::Any + Send>,
}

pub struct Response {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// A customer workspace with an owner who is not a platform operator.
pub struct Tenant {
    pub ws: String,
    pub owner_email: String,
    pub owner_token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(HttpSettings::default()).await
}

pub async fn spawn_with(http: HttpSettings) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cp.db")).await.unwrap();
    store.migrate().await.unwrap();
    let apps = AppDatabaseConfig::Sqlite {
        dir: dir.path().join("apps"),
    };
    let apps_dir = dir.path().join("apps");
    let db_url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let mut app = serve(Arc::new(store), apps, http, Box::new(dir)).await;
    app.apps_dir = Some(apps_dir);
    app.db_url = db_url;
    app
}

/// Postgres with `AUTHSOME_APP_ISOLATION=schema`: every application a schema and a role in one
/// shared database.
pub async fn spawn_postgres_schema() -> Option<TestApp> {
    let db = authsome_testkit::TestDatabase::create().await?;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let apps = AppDatabaseConfig::PostgresSchema {
        server_url: db.url.clone(),
    };
    let db_url = db.url.clone();
    let mut app = serve(Arc::new(store), apps, HttpSettings::default(), Box::new(db)).await;
    app.db_url = db_url;
    Some(app)
}

/// `None` outside CI when Postgres is not reachable.
pub async fn spawn_postgres() -> Option<TestApp> {
    let db = authsome_testkit::TestDatabase::create().await?;
    let store = PostgresStore::connect(&db.url).await.unwrap();
    store.migrate().await.unwrap();
    let apps = AppDatabaseConfig::Postgres {
        server_url: db.url.clone(),
    };
    let db_url = db.url.clone();
    let mut app = serve(Arc::new(store), apps, HttpSettings::default(), Box::new(db)).await;
    app.db_url = db_url;
    Some(app)
}

async fn serve(
    store: Arc<dyn Store>,
    apps: AppDatabaseConfig,
    http: HttpSettings,
    guard: Box<dyn std::any::Any + Send>,
) -> TestApp {
    serve_with(store, apps, http, guard, SharedState::InProcess, None, None)
        .await
        .expect("an in-process server builds")
}

/// An app on SQLite with settings changed by `tune` (after the tests' defaults).
pub async fn spawn_tuned(tune: fn(&mut Settings)) -> TestApp {
    serve_sqlite(None, Some(Box::new(tune))).await
}

/// [`spawn_tuned`] with a closure (settings that name a server the test started).
pub async fn spawn_configured(tune: impl FnOnce(&mut Settings) + Send + 'static) -> TestApp {
    serve_sqlite(None, Some(Box::new(tune))).await
}

pub type Tune = Box<dyn FnOnce(&mut Settings) + Send>;

/// An app on SQLite whose control plane mails through the SMTP server at `url`.
pub async fn spawn_with_mailer(url: &str) -> TestApp {
    let mailer =
        authsome_server::mail::SmtpMailer::new(url, "AuthSome Tests <noreply@authsome.test>")
            .unwrap();
    serve_sqlite(Some(Arc::new(mailer)), None).await
}

/// An in-process app on a fresh SQLite control plane and applications folder.
async fn serve_sqlite(
    mailer: Option<Arc<dyn authsome_control::mail::Mailer>>,
    tune: Option<Tune>,
) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cp.db")).await.unwrap();
    store.migrate().await.unwrap();
    let apps = AppDatabaseConfig::Sqlite {
        dir: dir.path().join("apps"),
    };
    let db_url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let mut app = serve_with(
        Arc::new(store),
        apps,
        HttpSettings::default(),
        Box::new(dir),
        SharedState::InProcess,
        mailer,
        tune,
    )
    .await
    .expect("an in-process server builds");
    app.db_url = db_url;
    app
}

/// A fresh Redis key prefix, so that tests sharing one Redis never meet.
fn redis_prefix() -> String {
    format!("authsome-test-{}:", uuid::Uuid::now_v7().simple())
}

fn redis_state(url: &str, prefix: &str) -> SharedState {
    SharedState::Redis {
        url: url.parse().expect("a Redis URL"),
        prefix: prefix.to_owned(),
        app_users: false,
    }
}

/// An app whose shared state (rate limits, invalidations, replay memory, sign-in throttles)
/// lives in the Redis at `url`. `None` when it cannot connect.
pub async fn spawn_with_redis_at(url: &str) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cp.db")).await.unwrap();
    store.migrate().await.unwrap();
    let apps_dir = dir.path().join("apps");
    let mut app = serve_with(
        Arc::new(store),
        AppDatabaseConfig::Sqlite {
            dir: apps_dir.clone(),
        },
        HttpSettings::default(),
        Box::new(dir),
        redis_state(url, &redis_prefix()),
        None,
        None,
    )
    .await
    .ok()?;
    app.apps_dir = Some(apps_dir);
    Some(app)
}

/// The Redis key prefix of the app from [`spawn_vault_in_redis`], and a client of it.
pub struct VaultRedis {
    pub prefix: String,
    pub client: redis::Client,
}

/// An app on SQLite whose vault keeps its envelopes in Redis (`AUTHSOME_VAULT_BACKEND=redis`,
/// a fresh prefix). `None` outside CI without Redis; in CI an unreachable Redis fails.
pub async fn spawn_vault_in_redis() -> Option<TestApp> {
    let url = std::env::var("AUTHSOME_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    spawn_vault_in_redis_at(&url).await
}

/// [`spawn_vault_in_redis`] with the Redis at `url`.
pub async fn spawn_vault_in_redis_at(url: &str) -> Option<TestApp> {
    let url = url.to_owned();
    let prefix = redis_prefix();
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("cp.db").display());
    let store = SqliteStore::open(&dir.path().join("cp.db")).await.unwrap();
    store.migrate().await.unwrap();
    let apps = AppDatabaseConfig::Sqlite {
        dir: dir.path().join("apps"),
    };
    let built = serve_with(
        Arc::new(store),
        apps,
        HttpSettings::default(),
        Box::new(dir),
        redis_state(&url, &prefix),
        None,
        Some(Box::new(|s: &mut Settings| s.vault_in_redis = true)),
    )
    .await;
    let mut app = match built {
        Ok(app) => app,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and Redis is unreachable at {url}: {e}")
        }
        Err(e) => {
            eprintln!("skipping the Redis vault test: {e}");
            return None;
        }
    };
    app.db_url = db_url;
    let client = redis::Client::open(url).unwrap();
    app.vault_redis = Some(VaultRedis { prefix, client });
    Some(app)
}

/// Two replicas on one SQLite control plane whose shared state lives in Redis under a fresh
/// prefix: the first as a `TestApp`, the second's base URL. `None` outside CI without Redis.
pub async fn spawn_two_replicas_with_redis() -> Option<(TestApp, String)> {
    let url = std::env::var("AUTHSOME_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = redis_prefix();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("cp.db")).await.unwrap());
    store.migrate().await.unwrap();
    let apps_dir = dir.path().join("apps");
    let first = serve_with(
        store.clone(),
        AppDatabaseConfig::Sqlite {
            dir: apps_dir.clone(),
        },
        HttpSettings::default(),
        Box::new(dir),
        redis_state(&url, &prefix),
        None,
        None,
    )
    .await;
    let first = match first {
        Ok(app) => app,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and Redis is unreachable at {url}: {e}")
        }
        Err(e) => {
            eprintln!("skipping the Redis test: {e}");
            return None;
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(
        store,
        AppDatabaseConfig::Sqlite { dir: apps_dir },
        base.clone(),
    );
    settings.open_applications = 64;
    // Replicas share the deployment's master key.
    settings.master_key =
        MasterKey::from_base64(&first.state.identity.master_key().to_base64()).unwrap();
    settings.shared = redis_state(&url, &prefix);
    let second = App::build(settings).await.ok()?;
    second.start();
    let state = second.state.clone();
    let router = authsome_server::router(state.clone());
    tokio::spawn(async move {
        let _running = second;
        authsome_server::serve(listener, state, router, std::future::pending()).await
    });
    Some((first, base))
}

/// The server of a test: the composition root `main` uses, on 127.0.0.1:0, with a manual clock
/// and the root workspace bootstrapped.
async fn serve_with(
    store: Arc<dyn Store>,
    apps: AppDatabaseConfig,
    http: HttpSettings,
    guard: Box<dyn std::any::Any + Send>,
    shared: SharedState,
    mailer: Option<Arc<dyn authsome_control::mail::Mailer>>,
    tune: Option<Tune>,
) -> Result<TestApp, authsome_server::BuildError> {
    let root_email = "root@platform.test".to_owned();
    let BootstrapResult::Created {
        workspace_id,
        password,
        management_key,
        ..
    } = ControlPlane::new(store.clone(), ControlSettings::default())
        .bootstrap(&root_email, None)
        .await
        .unwrap()
    else {
        panic!("fresh database was already bootstrapped");
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let clock = authsome_domain::clock::Clock::manual();
    let mut settings = Settings::new(store, apps, base.clone());
    settings.open_applications = 64;
    settings.http = http;
    settings.shared = shared;
    settings.mailer = mailer;
    settings.clock = clock.clone();
    if let Some(tune) = tune {
        tune(&mut settings);
    }
    let app = App::build(settings).await?;
    app.start();
    let state = app.state.clone();
    let router = authsome_server::router(state.clone());
    tokio::spawn(authsome_server::serve(
        listener,
        state.clone(),
        router,
        std::future::pending(),
    ));
    Ok(TestApp {
        base,
        client: reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .build()
            .unwrap(),
        state,
        root_ws: workspace_id.to_string(),
        root_email,
        root_password: password.unwrap(),
        root_key: management_key,
        apps_dir: None,
        db_url: String::new(),
        clock,
        vault_redis: None,
        _guard: Box::new((guard, app)),
    })
}

impl TestApp {
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        Self::read(response).await
    }

    pub async fn read(response: reqwest::Response) -> Response {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body {status}: {text}"))
        };
        Response {
            status,
            body,
            headers,
        }
    }

    /// Another replica of this (SQLite) app: the same database, master key and clock, with
    /// `tune` applied; built, not serving HTTP and without background loops (a test drives it).
    pub async fn replica(&self, tune: impl FnOnce(&mut Settings)) -> App {
        let apps = AppDatabaseConfig::Sqlite {
            dir: self.apps_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("authsome-replica-{}", uuid::Uuid::now_v7()))
            }),
        };
        let mut settings =
            Settings::new(self.state.control.store().clone(), apps, self.base.clone());
        settings.master_key =
            MasterKey::from_base64(&self.state.identity.master_key().to_base64()).unwrap();
        settings.clock = self.clock.clone();
        tune(&mut settings);
        App::build(settings).await.unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::PATCH, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .call(
                Method::POST,
                "/control/v1/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(r.status, 200, "login {email}: {}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    pub async fn root_token(&self) -> String {
        self.login(&self.root_email, &self.root_password).await
    }

    /// Changes workspace `ws` as a platform operator (plan, limits, standing), which must
    /// succeed; the workspace as it is now.
    pub async fn admin_patch_workspace(&self, ws: &str, patch: Value) -> Value {
        let root = self.root_token().await;
        let r = self
            .patch(&format!("/control/v1/admin/workspaces/{ws}"), &root, patch)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// Invites `email` with `role` into `ws` (as `inviter`), accepts, and signs in.
    pub async fn add_member(
        &self,
        inviter: &str,
        ws: &str,
        email: &str,
        role: &str,
    ) -> (String, String) {
        let r = self
            .post(
                &format!("/control/v1/workspaces/{ws}/members"),
                inviter,
                json!({"email": email, "role": role}),
            )
            .await;
        assert_eq!(r.status, 201, "invite {email}: {}", r.body);
        let member_id = r.body["id"].as_str().unwrap().to_owned();
        let token = self.invitation_token(&r.body).await;
        let password = format!("pw-{email}-long-enough");
        let accepted = self
            .call(
                Method::POST,
                "/control/v1/auth/accept-invitation",
                None,
                Some(json!({"token": token, "password": password})),
            )
            .await;
        assert_eq!(accepted.status, 200, "accept {email}: {}", accepted.body);
        (member_id, self.login(email, &password).await)
    }

    /// The token of the invitation in an invite's answer: in it when a platform operator
    /// invited; otherwise (no mail server in these tests) the one a platform operator is given
    /// to relay.
    pub async fn invitation_token(&self, invited: &Value) -> String {
        if let Some(token) = invited["invitation"]["token"].as_str() {
            return token.to_owned();
        }
        let id = invited["invitation"]["id"].as_str().unwrap();
        let r = self
            .call(
                Method::POST,
                &format!("/control/v1/admin/invitations/{id}/token"),
                Some(&self.root_key),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "reissue {id}: {}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// A workspace owned by a fresh person who is not a platform operator: the operator creates
    /// it, hands ownership over, and leaves.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let root = self.root_token().await;
        let r = self
            .post("/control/v1/workspaces", &root, json!({"name": name}))
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let ws = r.body["id"].as_str().unwrap().to_owned();
        let owner_email = format!("owner@{}.test", name.to_lowercase().replace(' ', "-"));
        let (_, owner_token) = self.add_member(&root, &ws, &owner_email, "owner").await;
        let members = self
            .get(&format!("/control/v1/workspaces/{ws}/members"), &root)
            .await;
        let root_member = members.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["email"] == self.root_email.as_str())
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let left = self
            .delete(
                &format!("/control/v1/workspaces/{ws}/members/{root_member}"),
                &root,
            )
            .await;
        assert_eq!(left.status, 204, "{}", left.body);
        Tenant {
            ws,
            owner_email,
            owner_token,
        }
    }

    /// Creates an application in `ws` and returns its id.
    pub async fn application(&self, token: &str, ws: &str, environment: &str) -> String {
        let r = self
            .post(
                &format!("/control/v1/workspaces/{ws}/applications"),
                token,
                json!({"name": format!("{environment} app"), "environment": environment}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Creates a key of `kind` on `app` and returns (key id, secret).
    pub async fn key(&self, token: &str, app: &str, kind: &str) -> (String, String) {
        let r = self
            .post(
                &format!("/control/v1/applications/{app}/keys"),
                token,
                json!({"type": kind}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        (
            r.body["id"].as_str().unwrap().to_owned(),
            r.body["secret"].as_str().unwrap().to_owned(),
        )
    }

    /// `GET /v1/{app}` with `key` as a Bearer credential.
    pub async fn identify(&self, app: &str, key: &str) -> Response {
        self.get(&format!("/v1/{app}"), key).await
    }
}

/// Asserts the contract's error body and status.
pub fn assert_error(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "expected {status} {code}, got {}", r.body);
    assert_eq!(r.body["error"]["code"], code, "{}", r.body);
    let id = r.body["error"]["requestId"].as_str().unwrap();
    assert!(id.starts_with("req_"), "{id}");
    assert_eq!(
        r.headers
            .get("x-authsome-request-id")
            .unwrap()
            .to_str()
            .unwrap(),
        id
    );
    assert!(r.body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

/// A dedicated application's instance (`authsome serve --app`) beside a gateway `TestApp`: the
/// same control plane and application databases and master key, in instance mode, on its own
/// runtime in its own thread, so that [`Instance::stop`] ends it the way a crash would (every
/// connection closed at once).
pub struct Instance {
    pub base: String,
    /// Requests this instance received.
    pub hits: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A port for an instance that is not started yet (the application must name its upstreams
/// when it is created).
pub fn reserve_port() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    listener
}

pub fn spawn_instance(
    gateway: &TestApp,
    app_id: &str,
    listener: std::net::TcpListener,
) -> Instance {
    let base = format!("http://{}", listener.local_addr().unwrap());
    let db = gateway
        .db_url
        .strip_prefix("sqlite://")
        .expect("instances run on the SQLite gateway")
        .to_owned();
    let apps_dir = gateway.apps_dir.clone().unwrap();
    let master = gateway.state.identity.master_key().to_base64();
    let public_url = gateway.base.clone();
    let only_app = authsome_domain::id::ApplicationId::parse(app_id).unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready) = std::sync::mpsc::channel();
    let counter = hits.clone();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let store = SqliteStore::open(std::path::Path::new(&db)).await.unwrap();
            let mut settings = Settings::new(
                Arc::new(store),
                AppDatabaseConfig::Sqlite { dir: apps_dir },
                public_url,
            );
            settings.open_applications = 64;
            settings.master_key = MasterKey::from_base64(&master).unwrap();
            settings.http.only_app = Some(only_app);
            let instance = App::build(settings).await.unwrap();
            instance.start();
            let state = instance.state.clone();
            let router = authsome_server::router(state.clone()).layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    if request.uri().path() != "/health" {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    next.run(request)
                },
            ));
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            ready_tx.send(()).unwrap();
            tokio::select! {
                () = authsome_server::serve(listener, state, router, std::future::pending()) => {}
                _ = stopped => {}
            }
        });
        // Dropping the runtime ends every task: each connection closes at once.
        drop(runtime);
    });
    ready.recv().unwrap();
    Instance {
        base,
        hits,
        stop: Some(stop),
        thread: Some(thread),
    }
}

impl Instance {
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

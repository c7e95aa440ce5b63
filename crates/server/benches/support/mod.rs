//! What the benchmarks share: a server on a fresh control plane, bootstrapped and serving on a
//! random port, as `main` builds it.

use std::sync::Arc;

use authsome_control::{BootstrapResult, ControlPlane, ControlSettings};
use authsome_server::{App, Settings};
use authsome_storage::app::AppDatabaseConfig;
use authsome_storage::Store;

pub struct Server {
    pub app: App,
    pub base: String,
    /// The root workspace's management key.
    pub management_key: String,
    pub workspace: String,
}

/// Migrates and bootstraps `store`, builds the server from its defaults with `tune` applied,
/// starts it and serves it on a random port.
pub async fn start(
    store: Arc<dyn Store>,
    apps: AppDatabaseConfig,
    tune: impl FnOnce(&mut Settings),
) -> Server {
    store.migrate().await.expect("migrate");
    let BootstrapResult::Created {
        workspace_id,
        management_key,
        ..
    } = ControlPlane::new(store.clone(), ControlSettings::default())
        .bootstrap("root@bench.local", None)
        .await
        .expect("bootstrap")
    else {
        panic!("a fresh database was already bootstrapped");
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = Settings::new(store, apps, base.clone());
    tune(&mut settings);
    let app = App::build(settings).await.expect("the server builds");
    app.start();
    let state = app.state.clone();
    let router = authsome_server::router(state.clone());
    tokio::spawn(authsome_server::serve(
        listener,
        state,
        router,
        std::future::pending(),
    ));
    Server {
        app,
        base,
        management_key: management_key.to_owned(),
        workspace: workspace_id.to_string(),
    }
}

//! A Salesforce org over HTTP, for sfpipe's demo and tests: OAuth token endpoint, describe, REST
//! query/queryAll with paging, Bulk API 2.0 query jobs, Salesforce-shaped errors, API usage
//! headers, and injectable faults. Its data is a generated org (see [`org`]).
//!
//! Where to start reading: [`Simulator`] below (start, inject faults, mutate the org), then
//! `server` (the router; each kind of endpoint has a module), then [`org`] (the data).
//! It shares no code with sfpipe's client: it is the client's contact with Salesforce's shapes.

pub mod bandwidth;
mod header_case;
pub mod org;
mod server;
pub mod soql;
mod stored_pages;

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::oneshot;

pub use org::{MutationCounts, Org};

/// The demo connected app's public key: JWT bearer assertions are checked against it.
pub const DEMO_PUBLIC_KEY_PEM: &str = include_str!("../keys/demo-connected-app.pub.pem");
/// The matching private key, for the simulator's clients (the demo, tests). Protects nothing.
pub const DEMO_PRIVATE_KEY_PEM: &str = include_str!("../keys/demo-connected-app.key.pem");
pub use server::{Fault, FiredFault, SimConfig};

/// A running simulator. Dropping it stops the server.
pub struct Simulator {
    url: String,
    state: Arc<server::SimState>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Serves the org on `addr` (port 0: a free port) until dropped or stopped.
    pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}");
        let state = Arc::new(server::SimState::new(config, url.clone()));
        let app = server::router(state.clone());
        let handle = axum_server::Handle::new();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let stopper = handle.clone();
        tokio::spawn(async move {
            let _ = stopped.await;
            stopper.graceful_shutdown(None);
        });
        let mut server = axum_server::from_tcp(listener)?
            .acceptor(header_case::HeaderCaseAcceptor(
                axum_server::accept::DefaultAcceptor,
            ))
            .handle(handle);
        server.http_builder().http1().title_case_headers(true);
        let task = tokio::spawn(async move {
            if let Err(error) = server.serve(app.into_make_service()).await {
                tracing::error!(%error, "simulator stopped with an error");
            }
        });
        Ok(Self {
            url,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Serves HTTPS on `addr` with a self-signed certificate for 127.0.0.1 and localhost, which
    /// it writes (PEM) to `certificate_file` for clients to trust.
    pub async fn start_tls(
        config: SimConfig,
        addr: SocketAddr,
        certificate_file: &std::path::Path,
    ) -> std::io::Result<Self> {
        let certified = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .map_err(std::io::Error::other)?;
        let certificate_pem = certified.cert.pem();
        std::fs::write(certificate_file, &certificate_pem)?;
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            certificate_pem.into_bytes(),
            certified.signing_key.serialize_pem().into_bytes(),
        )
        .await?;
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?;
        let url = format!("https://{local}");
        let state = Arc::new(server::SimState::new(config, url.clone()));
        let app = server::router(state.clone());
        let handle = axum_server::Handle::new();
        let (shutdown, stopped) = oneshot::channel::<()>();
        let stopper = handle.clone();
        tokio::spawn(async move {
            let _ = stopped.await;
            stopper.graceful_shutdown(Some(std::time::Duration::from_secs(1)));
        });
        let mut server = axum_server::from_tcp(listener)?
            .acceptor(header_case::HeaderCaseAcceptor(
                axum_server::tls_rustls::RustlsAcceptor::new(tls),
            ))
            .handle(handle);
        server.http_builder().http1().title_case_headers(true);
        let task = tokio::spawn(async move {
            if let Err(error) = server.serve(app.into_make_service()).await {
                tracing::error!(%error, "simulator stopped with an error");
            }
        });
        Ok(Self {
            url,
            state,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Serves on a free port of 127.0.0.1.
    pub async fn start_local(config: SimConfig) -> std::io::Result<Self> {
        Self::start(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Base URL: both the login URL and the instance URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The simulator playing the generic login host (`login.salesforce.com`) rather than the
    /// org's My Domain (`url`): it refuses the client credentials flow, as Salesforce does.
    pub fn login_host_url(&self) -> String {
        format!("{}{}", self.url, server::LOGIN_HOST_PATH)
    }

    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// Read access to the org's data.
    pub fn with_org<T>(&self, read: impl FnOnce(&Org) -> T) -> T {
        let org = self.state.org.read().unwrap_or_else(|p| p.into_inner());
        read(&org)
    }

    /// Applies a mutation round at `at` (inserts, updates, deletes per object).
    pub fn mutate(&self, at: DateTime<Utc>) -> Vec<(String, MutationCounts)> {
        let mut org = self.state.org.write().unwrap_or_else(|p| p.into_inner());
        org.mutate(at)
    }

    /// Adds a custom text field to an object, as of `at` (see [`Org::add_field`]).
    pub fn add_field(&self, object: &str, name: &'static str, at: DateTime<Utc>) -> bool {
        let mut org = self.state.org.write().unwrap_or_else(|p| p.into_inner());
        org.add_field(object, name, at)
    }

    /// Removes a field from an object (see [`Org::remove_field`]).
    pub fn remove_field(&self, object: &str, name: &str) -> bool {
        let mut org = self.state.org.write().unwrap_or_else(|p| p.into_inner());
        org.remove_field(object, name)
    }

    /// Hard-deletes up to `count` of `object`'s rows, spread over its Ids (see [`Org::purge`]);
    /// returns the Ids that vanished.
    pub fn hard_delete(&self, object: &str, count: u64) -> Vec<String> {
        let mut org = self.state.org.write().unwrap_or_else(|p| p.into_inner());
        org.spread(object, count, |org, position, index| {
            org.purge(position, index)
        })
    }

    /// The next `count` Bulk jobs of `object` end Failed.
    pub fn fail_jobs(&self, object: &str, count: u32) {
        self.state.fail_jobs(object, count);
    }

    /// Makes matching requests fail as described.
    pub fn inject(&self, faults: Vec<Fault>) {
        self.state.add_faults(faults);
    }

    /// The faults set while running ([`Simulator::inject`], [`Simulator::fail_jobs`]) that took
    /// effect since the last call, in order: a fault counts when it fires, not when it is set.
    pub fn take_fired_faults(&self) -> Vec<FiredFault> {
        self.state.take_fired()
    }

    /// Invalidates every session, as an org's session timeout does.
    pub fn expire_sessions(&self) {
        self.state.expire_sessions();
    }

    /// API calls served so far.
    pub fn api_calls(&self) -> u64 {
        self.state.api_calls()
    }

    /// Bulk API 2.0 query jobs created so far (Salesforce's `DailyBulkV2QueryJobs`).
    pub fn bulk_jobs_created(&self) -> u64 {
        self.state.bulk_jobs_created()
    }

    /// Updates `count` live rows of `object` at `at` (new SystemModstamp and values), spread over
    /// its Ids; returns their Ids.
    pub fn update_rows(&self, object: &str, count: u64, at: DateTime<Utc>) -> Vec<String> {
        let mut org = self.state.org.write().unwrap_or_else(|p| p.into_inner());
        org.update_rows(object, count, at)
    }

    /// Inserts a row of `object` whose SystemModstamp (and CreatedDate) is `modstamp`: a
    /// transaction that committed late, after rows with a newer stamp were read. Returns its Id.
    pub fn insert_row(&self, object: &str, modstamp: DateTime<Utc>) -> Option<String> {
        let mut org = self.state.org.write().unwrap_or_else(|p| p.into_inner());
        org.insert_row(object, modstamp)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

//! `TCP_NODELAY` on the pool's sockets, set at run time (`src/net.rs`).

use std::net::SocketAddr;
use std::time::Duration;

use mockinterview_db::DbConfig;
use pgconn::socket::{SocketState, connections_to};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use test_db::TestDatabase;

/// The server's addresses as the pool resolves the test database's host.
async fn server_of(db: &TestDatabase) -> Vec<SocketAddr> {
    let url = db.db_url();
    tokio::net::lookup_host((url.host(), url.port()))
        .await
        .unwrap()
        .collect()
}

/// The kernel's view of the socket of `conn`'s (single) pooled connection:
/// the server tells us its client port (a direct connection, no pooler in
/// between).
async fn pooled_socket(conn: &impl ConnectionTrait, server: &[SocketAddr]) -> SocketState {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT inet_client_port() AS port",
        ))
        .await
        .unwrap()
        .unwrap();
    let port: i32 = row.try_get("", "port").unwrap();
    let states = connections_to(server).unwrap();
    *states
        .iter()
        .find(|s| s.local.map(|a| i32::from(a.port())) == Some(port))
        .unwrap_or_else(|| panic!("no socket with local port {port} in {states:?}"))
}

#[tokio::test]
async fn pool_connections_get_tcp_nodelay() {
    let db = TestDatabase::new().await;
    let server = server_of(&db).await;
    // A plain socket to the server with Nagle on, as sqlx 0.9.0 leaves its
    // own. The pool's hook tunes every socket of the process connected to
    // the server, so this one shows that the hook ran and set the option,
    // whatever the sqlx in this build does itself.
    let bystander = std::net::TcpStream::connect(server[0]).unwrap();
    assert!(!bystander.nodelay().unwrap());

    let mut config = DbConfig::new(db.url());
    config.max_connections = 1;
    let conn = config.connect().await.unwrap();
    assert!(
        bystander.nodelay().unwrap(),
        "the after_connect hook did not set TCP_NODELAY"
    );

    // The pool's own socket, read back from the kernel.
    let ours = pooled_socket(&conn, &server).await;
    assert!(ours.nodelay, "{ours:?}");
    // DbConfig's defaults: keepalive after 30 s idle (probes every 10 s, 3
    // of them) and a 30 s TCP user timeout.
    assert!(ours.keepalive, "{ours:?}");
    assert_eq!(
        ours.keepalive_timings.idle,
        Duration::from_secs(30),
        "{ours:?}"
    );
    assert_eq!(
        ours.keepalive_timings.interval,
        Duration::from_secs(10),
        "{ours:?}"
    );
    assert_eq!(ours.keepalive_timings.count, 3, "{ours:?}");
    assert_eq!(ours.user_timeout, Duration::from_secs(30), "{ours:?}");
    assert!(!mockinterview_db::net::nodelay_warning_logged());
}

#[tokio::test]
async fn keepalive_and_user_timeout_follow_the_config() {
    let db = TestDatabase::new().await;
    let server = server_of(&db).await;
    let mut config = DbConfig::new(db.url());
    config.max_connections = 1;
    config.tcp_keepalive = Some(Duration::from_secs(7));
    config.tcp_user_timeout = Some(Duration::from_millis(4500));
    let conn = config.connect().await.unwrap();
    let ours = pooled_socket(&conn, &server).await;
    assert!(ours.keepalive, "{ours:?}");
    assert_eq!(
        ours.keepalive_timings.idle,
        Duration::from_secs(7),
        "{ours:?}"
    );
    assert_eq!(
        ours.keepalive_timings.interval,
        Duration::from_secs(2),
        "{ours:?}"
    );
    assert_eq!(ours.user_timeout, Duration::from_millis(4500), "{ours:?}");
}

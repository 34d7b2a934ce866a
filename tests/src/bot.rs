//! The whole bot, in-process: kubesim with its default seed, a real database (SQLite in a temp
//! dir, or a fresh PostgreSQL database from `scripts/test.sh`), a policy file, and the engine.
//! Chat happens through the console adapter, whose output is captured as a transcript.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use kubesim::{KubeSim, Seed};
use opsbot::config::{self, RateLimits};
use opsbot::console::{ConsoleSink, Session};
use opsbot::engine::{Engine, EngineOptions, PolicyFile};
use opsbot::metrics::Metrics;
use opsbot::store::{AuditKey, Store};
use opsbot_commands::ops::OpOptions;
use opsbot_commands::{Clusters, Operator};
use tempfile::TempDir;
use tokio::io::AsyncWrite;

/// Which database the bot runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// An in-memory writer whose content the test can read.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<Vec<u8>>>);

impl Transcript {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Everything written since `mark` (a length from [`Transcript::len`]).
    pub fn since(&self, mark: usize) -> String {
        let buf = self.0.lock().unwrap();
        String::from_utf8_lossy(&buf[mark.min(buf.len())..]).into_owned()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AsyncWrite for Transcript {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Quotas wide enough that no test but the rate-limit test meets them.
pub fn wide_limits() -> RateLimits {
    let wide = config::Quota {
        per_minute: 1_000_000.try_into().unwrap(),
        burst: 1_000_000.try_into().unwrap(),
    };
    RateLimits {
        per_user: wide,
        per_channel: wide,
        global: wide,
    }
}

/// What a test can change about the bot it starts.
#[derive(Clone)]
pub struct BotOptions {
    pub rate_limits: RateLimits,
    /// See [`EngineOptions::max_in_flight`].
    pub max_in_flight: usize,
    /// See [`EngineOptions::max_command_age`].
    pub max_command_age: Duration,
}

impl Default for BotOptions {
    fn default() -> Self {
        let engine = EngineOptions::default();
        BotOptions {
            rate_limits: wide_limits(),
            max_in_flight: engine.max_in_flight,
            max_command_age: engine.max_command_age,
        }
    }
}

/// A running bot and everything it stands on.
pub struct TestBot {
    pub sim: Arc<KubeSim>,
    pub engine: Engine,
    pub out: Transcript,
    pub sink: Arc<ConsoleSink<Transcript>>,
    pub db_url: String,
    pub policy_path: PathBuf,
    pub options: BotOptions,
    pub dir: Arc<TempDir>,
}

impl TestBot {
    /// Starts kubesim (clock at 30× real time), the database and the engine with `policy`.
    /// `None` when the PostgreSQL half is skipped (no `OPSBOT_TEST_POSTGRES_URL` outside CI).
    pub async fn start(db: Db, test: &str, policy: &str, options: BotOptions) -> Option<TestBot> {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let db_url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("opsbot.db").display()),
            Db::Postgres => opsbot::store::testing::fresh_postgres_url(test)
                .await
                .expect("a PostgreSQL test database")?,
        };
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy).unwrap();
        let sim = KubeSim::start(Seed::default_seed()).await.unwrap();
        sim.clock().set_speed(30.0);
        let sim = Arc::new(sim);
        Some(Self::engine_on(sim, dir, db_url, policy_path, options).await)
    }

    async fn engine_on(
        sim: Arc<KubeSim>,
        dir: Arc<TempDir>,
        db_url: String,
        policy_path: PathBuf,
        options: BotOptions,
    ) -> TestBot {
        // The key lives in the test's directory, so a restarted bot writes the same chain.
        let key = AuditKey::load_or_create(&dir.path().join("audit.key")).unwrap();
        let store = Store::open(&db_url)
            .await
            .unwrap()
            .with_audit(Arc::new(key), None);
        let policy = PolicyFile::load(&policy_path).unwrap();
        let mut clusters = Clusters::new();
        clusters
            .add_config(
                "kubesim",
                kube::Config::new(sim.url().parse().unwrap()),
                Some("production".into()),
            )
            .unwrap();
        let sim_clock = sim.clone();
        let op_options = OpOptions {
            rollout_timeout: Duration::from_secs(30),
            job_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            clock: Arc::new(move || sim_clock.clock().now()),
            ..OpOptions::default()
        };
        let engine = Engine::new(
            store,
            Arc::new(policy),
            Operator::with_options(clusters, op_options),
            EngineOptions {
                rate_limits: options.rate_limits,
                progress_interval: Duration::from_millis(100),
                max_in_flight: options.max_in_flight,
                max_command_age: options.max_command_age,
                ..EngineOptions::default()
            },
            Arc::new(Metrics::new()),
        );
        let out = Transcript::default();
        let sink = Arc::new(ConsoleSink::new(out.clone()));
        TestBot {
            sim,
            engine,
            out,
            sink,
            db_url,
            policy_path,
            options,
            dir,
        }
    }

    /// A console session speaking as `console:{name}`.
    pub fn session(&self, name: &str) -> Session<Transcript> {
        Session::new(self.engine.clone(), self.sink.clone(), name).unwrap()
    }

    /// Types `line` as `name` and returns what the bot answered.
    pub async fn say(&self, name: &str, line: &str) -> String {
        let mark = self.out.len();
        self.session(name).line(line).await.unwrap();
        self.out.since(mark)
    }

    /// Stops this engine and starts a new one on the same database, policy and cluster, as a
    /// restarted bot would.
    pub async fn restart(self) -> TestBot {
        self.engine.shutdown().await;
        self.engine.store().close().await;
        Self::engine_on(
            self.sim,
            self.dir,
            self.db_url,
            self.policy_path,
            self.options,
        )
        .await
    }

    /// A second engine on the same database, policy and cluster: another replica.
    pub async fn replica(&self) -> Engine {
        Self::engine_on(
            self.sim.clone(),
            self.dir.clone(),
            self.db_url.clone(),
            self.policy_path.clone(),
            self.options.clone(),
        )
        .await
        .engine
    }

    /// Runs one SQL statement on the bot's database behind its back (to age or tamper with rows).
    pub async fn raw_sql(&self, sql: &str) {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.db_url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    /// Replicas of a deployment as kubesim has them now.
    pub fn replicas(&self, ns: &str, name: &str) -> i64 {
        self.sim
            .get("apps/v1", "Deployment", ns, name)
            .and_then(|d| d["spec"]["replicas"].as_i64())
            .unwrap_or(-1)
    }
}

/// The approval id on the card in `text` (`type: approve ID`).
pub fn approval_id(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("[Approve] type: approve "))
        .map(|id| id.trim().to_owned())
}

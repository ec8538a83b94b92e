//! Store-level benchmark, run by `cargo xtask bench` in release mode against a mongod it
//! provisions: the session store (plain and encrypted) against the floor, the raw
//! `mongodb` driver doing the minimal equivalent operations with the same payload and
//! the same connection pool, at concurrency 1 and 64.
//!
//! Every operation of a round runs over its own sessions in this order: create, load,
//! save (changed), save (unchanged, inside `touch_after`), save (unchanged, outside it),
//! delete; each operation runs for the raw floor, the store and the encrypted store back
//! to back (the order rotates per round), so the ratios compare runs seconds apart.
//! ops/s is the median over rounds, store/raw the median of per-round ratios, p50/p99
//! come from all rounds' latencies, and writes per operation are the documents the
//! server wrote (`serverStatus` `metrics.document`). The floor finds and updates by
//! `_id` alone (the server's fast path) and its collection has the store's TTL index. Timings are reported, never asserted.
//!
//! The HTTP part ([`http`]) runs each contract server, and Express + connect-mongo for
//! comparison, under wrk.
//!
//! Arguments: `--uri URI` (else `MONGODB_URI`), `--out FILE` (the markdown report),
//! `--rounds N` (default 3, quick 1), `--quick` (fewer sessions, shorter loads, one round: a smoke run under 5 minutes),
//! `--only store|commands|http|cache-memory|scale|payload|storm|connections|soak`, `--sizes N,N,...` (the scale part's stored sessions;
//! default 10000,100000,1000000, quick 1000,10000), and for the HTTP and later parts
//! `--server NAME=PATH[,VAR=VALUE...][,instances=N]` (repeated; a `.js` path runs under
//! node; `instances` starts that many processes on one database, sharing wrk's connections), `--wrk PATH`, `--connections N` (default 64), `--seconds N`
//! (default 10).

mod cache_memory;
mod chart;
mod commands;
mod connections;
mod http;
mod payload;
mod scale;
mod soak;
mod storm;
mod users;

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use futures_util::future::join_all;
use serde_json::json;
use session_store_core::time::{self, OffsetDateTime};
use session_store_core::{
    crypto::KeyRing, ManualClock, RequestScope, SaveOutcome, SessionData, SessionId, SessionStore,
};
use session_store_mongo::mongodb::bson::{doc, DateTime, Document};
use session_store_mongo::mongodb::options::IndexOptions;
use session_store_mongo::mongodb::{Client, Collection, Database, IndexModel};
use session_store_mongo::MongoBackend;

const DATABASE: &str = "session_store_bench";
/// The size of the serialized session, about what a real session holds.
const PAYLOAD_BYTES: usize = 1024;
const TOUCH_AFTER: Duration = Duration::from_secs(3600);
const TTL: time::Duration = time::Duration::days(14);
const CONCURRENCY: [usize; 2] = [1, 64];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Load,
    SaveChanged,
    SaveUnchangedInside,
    SaveUnchangedOutside,
    Delete,
}

const OPS: [Op; 6] = [
    Op::Create,
    Op::Load,
    Op::SaveChanged,
    Op::SaveUnchangedInside,
    Op::SaveUnchangedOutside,
    Op::Delete,
];

impl Op {
    fn label(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Load => "load",
            Self::SaveChanged => "save (changed)",
            Self::SaveUnchangedInside => "save (unchanged, inside touch_after)",
            Self::SaveUnchangedOutside => "save (unchanged, outside touch_after)",
            Self::Delete => "delete",
        }
    }

    /// What the raw driver does for it.
    fn raw_label(self) -> &'static str {
        match self {
            Self::Create => "insert_one",
            Self::Load => "find_one by _id",
            Self::SaveChanged => "update_one by _id, $set session+expires",
            Self::SaveUnchangedInside | Self::SaveUnchangedOutside => {
                "update_one by _id, $set expires"
            }
            Self::Delete => "delete_one",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Raw,
    Plain,
    Encrypted,
}

const VARIANTS: [Variant; 3] = [Variant::Raw, Variant::Plain, Variant::Encrypted];

/// One measured phase.
#[derive(Debug, Default, Clone)]
struct Measure {
    ops_per_sec: Vec<f64>,
    latencies_us: Vec<u64>,
    writes: u64,
    ops: u64,
}

impl Measure {
    fn add(&mut self, ops: u64, wall: Duration, latencies: Vec<u64>, writes: u64) {
        self.ops_per_sec.push(ops as f64 / wall.as_secs_f64());
        self.latencies_us.extend(latencies);
        self.writes += writes;
        self.ops += ops;
    }

    fn median_ops(&self) -> f64 {
        let mut v = self.ops_per_sec.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    fn percentile(&mut self, p: f64) -> u64 {
        self.latencies_us.sort_unstable();
        let n = self.latencies_us.len();
        if n == 0 {
            return 0;
        }
        let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
        self.latencies_us[i]
    }

    fn writes_per_op(&self) -> f64 {
        self.writes as f64 / self.ops.max(1) as f64
    }
}

struct Args {
    uri: String,
    out: Option<std::path::PathBuf>,
    /// `--append`: add this run's report to the end of `--out` instead of replacing it.
    append: bool,
    rounds: usize,
    quick: bool,
    /// `--only`: the one part to run, else all of them.
    only: Option<&'static str>,
    sizes: Option<Vec<usize>>,
    servers: Vec<http::Server>,
    wrk: Option<std::path::PathBuf>,
    connections: usize,
    seconds: Option<u64>,
}

/// The parts of the benchmark, in the order they run (`--only` picks one).
const PARTS: [&str; 9] = [
    "store",
    "commands",
    "http",
    "cache-memory",
    "scale",
    "payload",
    "storm",
    "connections",
    "soak",
];

impl Args {
    /// Whether `part` runs (the parts after `store` also need servers to run).
    fn runs(&self, part: &str) -> bool {
        self.only.is_none_or(|only| only == part)
            && (["store", "commands"].contains(&part) || !self.servers.is_empty())
    }
}

fn number<T: std::str::FromStr>(it: &mut impl Iterator<Item = String>, flag: &str) -> Result<T> {
    it.next()
        .with_context(|| format!("{flag} needs a value"))?
        .parse()
        .map_err(|_| anyhow::anyhow!("{flag} takes a positive number"))
}

fn args() -> Result<Args> {
    let mut args = Args {
        uri: std::env::var("MONGODB_URI").unwrap_or_default(),
        out: None,
        append: false,
        rounds: 3,
        quick: false,
        only: None,
        sizes: None,
        servers: Vec::new(),
        wrk: None,
        connections: 64,
        seconds: None,
    };
    let mut rounds = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--uri" => args.uri = it.next().context("--uri needs a value")?,
            "--out" => args.out = Some(it.next().context("--out needs a value")?.into()),
            "--append" => args.append = true,
            "--rounds" => rounds = Some(number(&mut it, "--rounds")?),
            "--quick" => args.quick = true,
            "--only" => {
                let part = it.next().context("--only needs a part")?;
                let known = PARTS.iter().find(|p| **p == part).with_context(|| {
                    format!("--only takes one of {}, not {part:?}", PARTS.join(", "))
                })?;
                args.only = Some(known);
            }
            "--sizes" => {
                let list = it
                    .next()
                    .context("--sizes needs a list, e.g. 10000,100000")?;
                let sizes = list
                    .split(',')
                    .map(|n| n.trim().parse::<usize>().ok().filter(|n| *n > 0))
                    .collect::<Option<Vec<_>>>()
                    .with_context(|| {
                        format!("--sizes {list}: positive numbers separated by commas")
                    })?;
                args.sizes = Some(sizes);
            }
            "--server" => args.servers.push(http::Server::parse(
                &it.next().context("--server needs NAME=PATH")?,
            )?),
            "--wrk" => args.wrk = Some(it.next().context("--wrk needs a path")?.into()),
            "--connections" => args.connections = number(&mut it, "--connections")?,
            "--seconds" => args.seconds = Some(number(&mut it, "--seconds")?),
            other => bail!("unknown argument {other:?}; see the crate docs"),
        }
    }
    // A quick run is one round unless told otherwise.
    args.rounds = rounds.unwrap_or(if args.quick { 1 } else { 3 });
    if args.uri.is_empty() {
        bail!("no MongoDB: pass --uri or set MONGODB_URI (cargo xtask bench provisions one)");
    }
    if args.rounds == 0 || args.connections == 0 || args.seconds == Some(0) {
        bail!("--rounds, --connections and --seconds take positive numbers");
    }
    if args.only != Some("store") && !args.servers.is_empty() && args.wrk.is_none() {
        bail!("--server needs --wrk PATH (cargo xtask bench fetches wrk)");
    }
    Ok(args)
}

fn session(n: usize, version: u64) -> SessionData {
    let mut data = SessionData::new();
    data.insert("user".into(), json!(format!("user-{n:06}")));
    data.insert("n".into(), json!(version));
    // Pad the JSON text to PAYLOAD_BYTES with token-like text: a run of one letter would
    // compress to nothing on disk and flatter the plain store against the encrypted one.
    let base = serde_json::to_string(&data).map_or(0, |s| s.len());
    let len = PAYLOAD_BYTES.saturating_sub(base + r#","pad":"""#.len());
    let mut state = (n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (version + 1);
    let pad: String = (0..len)
        .map(|_| {
            // xorshift64*: cheap, deterministic, incompressible enough.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            char::from(ALPHABET[(x >> 58) as usize])
        })
        .collect();
    data.insert("pad".into(), json!(pad));
    data
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn utc_minute(t: OffsetDateTime) -> String {
    format!(
        "{}-{:02}-{:02} {:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// Runs `per_worker` calls of `op` in each of `concurrency` tasks; returns the wall time
/// and every call's latency in microseconds.
async fn run<F, Fut>(concurrency: usize, per_worker: usize, op: F) -> Result<(Duration, Vec<u64>)>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let tasks = (0..concurrency).map(|w| {
        let op = Arc::clone(&op);
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_worker);
            for i in 0..per_worker {
                let t = Instant::now();
                op(w, i).await?;
                lat.push(t.elapsed().as_micros() as u64);
            }
            Ok::<_, anyhow::Error>(lat)
        })
    });
    let mut all = Vec::with_capacity(concurrency * per_worker);
    for r in join_all(tasks).await {
        all.extend(r.context("a benchmark task panicked")??);
    }
    Ok((started.elapsed(), all))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `sessions` collection of `db` with the store's TTL index on `expires`.
async fn sessions_with_ttl_index(db: &Database) -> Result<Collection<Document>> {
    let sessions = db.collection::<Document>("sessions");
    sessions
        .create_index(
            IndexModel::builder()
                .keys(doc! { "expires": 1 })
                .options(
                    IndexOptions::builder()
                        .name(session_store_mongo::TTL_INDEX_NAME.to_owned())
                        .expire_after(Duration::ZERO)
                        .build(),
                )
                .build(),
        )
        .await
        .context("creating the TTL index")?;
    Ok(sessions)
}

/// Bulk-inserts the ~1 KB sessions numbered `range` (`session(n, 1)`, as JSON text), all
/// expiring at `expires`, under the `_id`s `key` gives, in unordered batches of 10,000.
async fn insert_sessions(
    sessions: &Collection<Document>,
    range: std::ops::Range<usize>,
    expires: DateTime,
    key: impl Fn(usize) -> String,
) -> Result<()> {
    const BATCH: usize = 10_000;
    let mut n = range.start;
    while n < range.end {
        let end = (n + BATCH).min(range.end);
        let docs = (n..end)
            .map(|i| -> Result<Document> {
                Ok(doc! {
                    "_id": key(i),
                    "session": serde_json::to_string(&session(i, 1))?,
                    "expires": expires,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        sessions
            .insert_many(docs)
            .ordered(false)
            .await
            .context("bulk-loading sessions")?;
        n = end;
    }
    Ok(())
}

/// What the benchmark reads of `serverStatus`.
pub(crate) struct ServerStatus {
    /// Documents inserted, updated and deleted so far (`metrics.document`).
    pub writes: u64,
    /// mongod's process id (its CPU time is read from `/proc` when it runs here).
    pub pid: Option<u32>,
    /// Client connections open to mongod (`connections.current`).
    pub connections: u64,
}

pub(crate) async fn server_status(db: &Database) -> Result<ServerStatus> {
    let status = db.run_command(doc! { "serverStatus": 1 }).await?;
    let number = |d: &Document, k: &str| {
        d.get_i64(k)
            .or_else(|_| d.get_i32(k).map(i64::from))
            .unwrap_or(0)
    };
    // Documents written, whatever the command: the store's leases are taken with
    // findAndModify, which `opcounters` counts as a command, not an update.
    let d = status.get_document("metrics")?.get_document("document")?;
    let writes = number(d, "inserted") + number(d, "updated") + number(d, "deleted");
    Ok(ServerStatus {
        writes: u64::try_from(writes).unwrap_or(0),
        pid: u32::try_from(number(&status, "pid"))
            .ok()
            .filter(|p| *p > 0),
        connections: status
            .get_document("connections")
            .map(|c| u64::try_from(number(c, "current")).unwrap_or(0))
            .unwrap_or(0),
    })
}

/// Documents inserted, updated and deleted so far (`serverStatus` `metrics.document`).
async fn writes(db: &Database) -> Result<u64> {
    Ok(server_status(db).await?.writes)
}

struct Stores {
    plain: SessionStore,
    encrypted: SessionStore,
    raw: Collection<Document>,
    clock: ManualClock,
}

async fn store(
    client: &Client,
    collection: &str,
    clock: &ManualClock,
    encrypt: bool,
) -> Result<SessionStore> {
    let backend = MongoBackend::builder()
        .client(client.clone())
        .database(DATABASE)
        .collection(collection)
        .build()
        .await?;
    let mut b = SessionStore::builder(backend)
        .touch_after(TOUCH_AFTER)
        .clock(clock.clone());
    if encrypt {
        b = b.cipher(KeyRing::parse(
            "bench:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        )?);
    }
    Ok(b.build().await?)
}

/// One round: every operation in order, each run for the three variants back to back (in
/// `order`), so a variant and the floor it is compared with run seconds apart on the
/// same machine state. Results go into `cells[variant index][op index]`.
async fn round(
    s: &Stores,
    db: &Database,
    order: [usize; 3],
    concurrency: usize,
    per_worker: usize,
    cells: &mut [Vec<Measure>],
) -> Result<()> {
    s.clock.set(OffsetDateTime::now_utc());
    let ops = (concurrency * per_worker) as u64;
    // Each variant works on its own sessions.
    let ids: Vec<Arc<Vec<Vec<Slot>>>> = (0..VARIANTS.len())
        .map(|_| {
            Arc::new(
                (0..concurrency)
                    .map(|_| (0..per_worker).map(|_| Slot::default()).collect())
                    .collect(),
            )
        })
        .collect();
    for (k, op) in OPS.into_iter().enumerate() {
        if op == Op::SaveUnchangedOutside {
            s.clock
                .advance(time::Duration::seconds(TOUCH_AFTER.as_secs() as i64 + 60));
        }
        for v in order {
            let store = match VARIANTS[v] {
                Variant::Plain => Some(s.plain.clone()),
                Variant::Encrypted => Some(s.encrypted.clone()),
                Variant::Raw => None,
            };
            let before = writes(db).await?;
            let (ids, raw, clock) = (Arc::clone(&ids[v]), s.raw.clone(), s.clock.clone());
            let (wall, lat) = run(concurrency, per_worker, move |w, i| {
                let (ids, store, raw, clock) =
                    (Arc::clone(&ids), store.clone(), raw.clone(), clock.clone());
                async move {
                    let n = w * 100_000 + i;
                    let slot = &ids[w][i];
                    match store {
                        Some(store) => store_op(&store.in_scope(&slot.scope), op, n, slot).await,
                        None => raw_op(&raw, &clock, op, n, slot).await,
                    }
                }
            })
            .await?;
            let after = writes(db).await?;
            cells[v][k].add(ops, wall, lat, after.saturating_sub(before));
        }
    }
    Ok(())
}

/// The median over rounds of `a`'s ops/s divided by `b`'s in the same round.
fn paired_ratio(a: &Measure, b: &Measure) -> f64 {
    let mut ratios: Vec<f64> = a
        .ops_per_sec
        .iter()
        .zip(&b.ops_per_sec)
        .map(|(x, y)| x / y)
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
}

/// One session of a worker: its id, and the request scope its store operations run in
/// (as in an application, where the adapter gives each request one; here one scope
/// follows the session from create to delete, so saves are judged against it).
#[derive(Default)]
struct Slot {
    id: std::sync::Mutex<String>,
    scope: RequestScope,
}

fn id_of(slot: &Slot) -> String {
    slot.id
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn set_id(slot: &Slot, id: String) {
    *slot
        .id
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = id;
}

async fn store_op(store: &SessionStore, op: Op, n: usize, slot: &Slot) -> Result<()> {
    match op {
        Op::Create => {
            let id = store.create(&session(n, 0), None).await?;
            set_id(slot, id.into_string());
        }
        Op::Load => {
            store
                .load(&id_of(slot))
                .await?
                .context("a created session did not load")?;
        }
        Op::SaveChanged => {
            let outcome = store.save(&id_of(slot), &session(n, 1), None).await?;
            anyhow::ensure!(
                outcome == SaveOutcome::Written,
                "changed save gave {outcome:?}"
            );
        }
        Op::SaveUnchangedInside => {
            let outcome = store.save(&id_of(slot), &session(n, 1), None).await?;
            anyhow::ensure!(
                outcome == SaveOutcome::Skipped,
                "unchanged save inside the window gave {outcome:?}"
            );
        }
        Op::SaveUnchangedOutside => {
            let outcome = store.save(&id_of(slot), &session(n, 1), None).await?;
            anyhow::ensure!(
                outcome == SaveOutcome::Touched,
                "unchanged save outside the window gave {outcome:?}"
            );
        }
        Op::Delete => store.destroy(&id_of(slot)).await?,
    }
    Ok(())
}

fn bson_date(t: OffsetDateTime) -> DateTime {
    DateTime::from_millis((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

async fn raw_op(
    coll: &Collection<Document>,
    clock: &ManualClock,
    op: Op,
    n: usize,
    slot: &Slot,
) -> Result<()> {
    use session_store_core::Clock as _;
    let now = clock.now();
    // The floor the issue sets: every operation by `_id` alone.
    let by_id = |id: &str| doc! { "_id": id };
    match op {
        Op::Create => {
            let id = SessionId::generate().as_str().to_owned();
            let text = serde_json::to_string(&session(n, 0))?;
            coll.insert_one(doc! { "_id": &id, "session": text, "expires": bson_date(now + TTL) })
                .await?;
            set_id(slot, id);
        }
        Op::Load => {
            let d = coll
                .find_one(by_id(&id_of(slot)))
                .await?
                .context("raw find found nothing")?;
            let _: SessionData = serde_json::from_str(d.get_str("session")?)?;
        }
        Op::SaveChanged => {
            let text = serde_json::to_string(&session(n, 1))?;
            let r = coll
                .update_one(
                    by_id(&id_of(slot)),
                    doc! { "$set": { "session": text, "expires": bson_date(now + TTL) } },
                )
                .await?;
            anyhow::ensure!(r.matched_count == 1, "raw update matched nothing");
        }
        Op::SaveUnchangedInside | Op::SaveUnchangedOutside => {
            let r = coll
                .update_one(
                    by_id(&id_of(slot)),
                    doc! { "$set": { "expires": bson_date(now + TTL) } },
                )
                .await?;
            anyhow::ensure!(r.matched_count == 1, "raw touch matched nothing");
        }
        Op::Delete => {
            coll.delete_one(doc! { "_id": id_of(slot) }).await?;
        }
    }
    Ok(())
}

/// Microseconds per seal + open of one session payload, in memory.
fn cipher_cost() -> Result<(f64, f64)> {
    use session_store_core::crypto::Cipher as _;
    let ring = KeyRing::parse("bench:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=")?;
    let text = serde_json::to_vec(&session(1, 0))?;
    let key = "0".repeat(64);
    let n = 20_000;
    let t = Instant::now();
    let mut sealed = Vec::new();
    for _ in 0..n {
        sealed = ring.seal(&text, &key).map_err(|e| anyhow::anyhow!(e))?;
    }
    let seal = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let t = Instant::now();
    for _ in 0..n {
        ring.open(&sealed, &key).map_err(|e| anyhow::anyhow!(e))?;
    }
    let open = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    Ok((seal, open))
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores ({model}), shared")
}

/// The store-vs-raw section of the report.
async fn store_section(
    args: &Args,
    client: &Client,
    db: &Database,
    version: &str,
) -> Result<String> {
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let raw = db.collection("raw");
    // The floor keeps the same indexes as the store (the TTL index on `expires`), so
    // both pay for the same index writes.
    raw.create_index(
        IndexModel::builder()
            .keys(doc! { "expires": 1 })
            .options(IndexOptions::builder().expire_after(Duration::ZERO).build())
            .build(),
    )
    .await?;
    let stores = Stores {
        plain: store(client, "plain", &clock, false).await?,
        encrypted: store(client, "encrypted", &clock, true).await?,
        raw,
        clock,
    };
    // Warm the pool and the collections.
    for c in CONCURRENCY {
        let mut scratch = vec![vec![Measure::default(); OPS.len()]; VARIANTS.len()];
        round(&stores, db, [0, 1, 2], c, 20, &mut scratch).await?;
    }

    let mut table = String::new();
    let started = Instant::now();
    for concurrency in CONCURRENCY {
        let per_worker = match (args.quick, concurrency) {
            (true, 1) => 200,
            (true, _) => 20,
            (false, 1) => 800,
            (false, _) => 60,
        };
        let mut cells: Vec<Vec<Measure>> =
            vec![vec![Measure::default(); OPS.len()]; VARIANTS.len()];
        // Short paired rounds, three per requested round: drift on a shared machine
        // then hits the store and its floor alike.
        let rounds = args.rounds * 3;
        for r in 0..rounds {
            let order = [r % 3, (r + 1) % 3, (r + 2) % 3];
            round(&stores, db, order, concurrency, per_worker, &mut cells).await?;
            eprintln!(
                "bench: concurrency {concurrency}, round {} of {rounds} done",
                r + 1,
            );
        }
        for (k, op) in OPS.into_iter().enumerate() {
            let [mut raw, mut plain, mut enc] = [0, 1, 2].map(|v| cells[v][k].clone());
            let (r, p, e) = (raw.median_ops(), plain.median_ops(), enc.median_ops());
            let (ratio, enc_cost) = (paired_ratio(&plain, &raw), 1.0 / paired_ratio(&enc, &plain));
            let _ = writeln!(
                table,
                "| {} | {concurrency} | {} | {r:.0} | {}/{} | {p:.0} | {}/{} | **{:.2}** | {:.2} | {e:.0} | {}/{} | {:+.1}% |",
                op.label(),
                op.raw_label(),
                raw.percentile(0.5),
                raw.percentile(0.99),
                plain.percentile(0.5),
                plain.percentile(0.99),
                ratio,
                plain.writes_per_op(),
                enc.percentile(0.5),
                enc.percentile(0.99),
                (enc_cost - 1.0) * 100.0,
            );
        }
    }
    let (seal, open) = cipher_cost()?;

    let mut report = String::new();
    let _ = writeln!(report, "## Store vs raw driver\n");
    let _ = writeln!(
        report,
        "{} UTC; {}; mongod {version}; ~{PAYLOAD_BYTES} B session; \
         `touch_after` {} s; the raw floor works by `_id` alone and its collection has the \
         store's TTL index; {} round(s), each running every operation for raw, store and \
         encrypted store back to back (order rotating); ops/s is the median over rounds, \
         store/raw and the encryption cost are medians of the per-round ratios, p50/p99 in \
         µs over all rounds; {:.0} s total.\n",
        utc_minute(OffsetDateTime::now_utc()),
        machine(),
        TOUCH_AFTER.as_secs(),
        args.rounds * 3,
        started.elapsed().as_secs_f64(),
    );
    report.push_str(
        "| operation | conc. | raw driver does | raw ops/s | raw p50/p99 | store ops/s | store p50/p99 | store/raw | store writes/op | encrypted ops/s | encrypted p50/p99 | encryption cost |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    report.push_str(&table);
    let _ = writeln!(
        report,
        "\nEncryption alone (AES-256-GCM, one ~{PAYLOAD_BYTES} B payload, in memory): seal {seal:.1} µs, open {open:.1} µs.\n\
         \"encryption cost\" is how much slower the encrypted store is than the plain one \
         (median per round of store ops/s ÷ encrypted ops/s, − 1); within a few percent it is noise on a shared machine."
    );
    Ok(report)
}

/// Adds a section to the report, after a blank line.
fn append(report: &mut String, section: &str) {
    if !report.is_empty() {
        report.push('\n');
    }
    report.push_str(section);
}

/// What each part after the HTTP one runs with.
pub(crate) struct Part<'a> {
    pub client: &'a Client,
    pub servers: &'a [http::Server],
    /// One round, `seconds` per wrk run.
    pub setup: http::Setup,
    /// The first line of the part's method paragraph.
    pub heading: String,
    pub quick: bool,
    /// Where charts go (beside the report), if anywhere.
    pub charts: Option<&'a std::path::Path>,
}

impl<'a> Part<'a> {
    /// `seconds` per wrk run: else `--seconds`, else 3 with `--quick` and 10 without.
    fn new(
        args: &'a Args,
        client: &'a Client,
        version: &str,
        seconds: Option<u64>,
        heading: fn(&str, &http::Setup) -> String,
    ) -> Result<Self> {
        let setup = http::Setup {
            uri: args.uri.clone(),
            wrk: args.wrk.clone().context("no wrk")?,
            connections: args.connections,
            seconds: seconds
                .or(args.seconds)
                .unwrap_or(if args.quick { 3 } else { 10 }),
            rounds: 1,
        };
        Ok(Self {
            client,
            servers: &args.servers,
            heading: heading(version, &setup),
            setup,
            quick: args.quick,
            charts: args.out.as_deref().and_then(std::path::Path::parent),
        })
    }
}

/// The first line of a part's method paragraph.
fn part_heading(version: &str, setup: &http::Setup) -> String {
    format!(
        "{} UTC; {}; mongod {version}; wrk with {} connections, {} s per run",
        utc_minute(OffsetDateTime::now_utc()),
        machine(),
        setup.connections,
        setup.seconds,
    )
}

/// The first line of the connections part's method paragraph (it sets the count itself).
fn connections_heading(version: &str, setup: &http::Setup) -> String {
    format!(
        "{} UTC; {}; mongod {version}; {} s per run",
        utc_minute(OffsetDateTime::now_utc()),
        machine(),
        setup.seconds,
    )
}

/// The HTTP section of the report.
async fn http_section(args: &Args, db: &Database, version: &str, topology: &str) -> Result<String> {
    let wrk = args.wrk.clone().context("no wrk")?;
    let setup = http::Setup {
        uri: args.uri.clone(),
        wrk,
        connections: args.connections,
        seconds: args.seconds.unwrap_or(if args.quick { 3 } else { 10 }),
        rounds: args.rounds,
    };
    let started = Instant::now();
    let table = http::run(&args.servers, &setup, db).await?;
    let mut report = String::new();
    let _ = writeln!(report, "## HTTP end to end ({topology})\n");
    let _ = writeln!(
        report,
        "{} UTC; {}; mongod {version}; release builds of the contract servers; \
         wrk with {} connections, one session per connection (created beforehand), {} s per \
         run; `PAYLOAD_BYTES` 900 (~1 KB session), `TOUCH_AFTER_SECS` 3600; {} round(s), \
         req/s is the median; writes/req are documents written (serverStatus metrics.document); start-up is process \
         start to the first `/health` answer (median); peak RSS is the maximum `VmHWM`; \
         {:.0} s total. wrk, the server and mongod share the 2 cores.\n",
        utc_minute(OffsetDateTime::now_utc()),
        machine(),
        setup.connections,
        setup.seconds,
        setup.rounds,
        started.elapsed().as_secs_f64(),
    );
    report.push_str(&table);
    Ok(report)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let args = args()?;
    let client = Client::with_uri_str(&args.uri)
        .await
        .context("MONGODB_URI is not a usable connection string")?;
    let db = client.database(DATABASE);
    db.drop()
        .await
        .context("cannot reach MongoDB (dropping the bench database)")?;
    let build = client
        .database("admin")
        .run_command(doc! { "buildInfo": 1 })
        .await?;
    // "6.0.5 (standalone, loopback)": every heading names the deployment it ran on.
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await?;
    let topology = match hello.get_str("setName") {
        Ok(set) => format!(
            "replica set `{set}` of {} member(s)",
            hello.get_array("hosts").map_or(1, Vec::len)
        ),
        Err(_) => "standalone".to_owned(),
    };
    let version = format!(
        "{} ({topology}, loopback)",
        build.get_str("version").unwrap_or("?")
    );

    let mut report = String::new();
    if args.runs("store") {
        report.push_str(&store_section(&args, &client, &db, &version).await?);
        db.drop().await?;
        report.push('\n');
        report.push_str(&users::users_section(&client, &db, DATABASE).await?);
        db.drop().await?;
    }
    if args.runs("commands") {
        let per_worker = if args.quick { 300 } else { 1_500 };
        let section = commands::section(&db, &version, args.rounds, per_worker).await?;
        db.drop().await?;
        append(&mut report, &section);
    }
    if args.runs("http") {
        let section = http_section(&args, &db, &version, &topology).await?;
        append(&mut report, &section);
    }
    if args.runs("cache-memory") {
        if hello.get_str("setName").is_ok() {
            let part = Part::new(&args, &client, &version, None, part_heading)?;
            append(&mut report, &cache_memory::section(&part).await?);
        } else if args.only == Some("cache-memory") {
            eprintln!("bench: cache-memory runs on a replica set only (the cache is off on a standalone server)");
        }
    }
    if args.runs("scale") {
        let sizes = args.sizes.clone().unwrap_or_else(|| {
            if args.quick {
                vec![1_000, 10_000]
            } else {
                vec![10_000, 100_000, 1_000_000]
            }
        });
        let part = Part::new(&args, &client, &version, None, part_heading)?;
        append(&mut report, &scale::section(&part, &sizes).await?);
    }
    if args.runs("payload") {
        let part = Part::new(&args, &client, &version, None, part_heading)?;
        append(&mut report, &payload::section(&part).await?);
    }
    if args.runs("storm") {
        // The storm's wrk runs are its own 3 s windows.
        let part = Part::new(&args, &client, &version, Some(3), part_heading)?;
        append(&mut report, &storm::section(&part).await?);
    }
    if args.runs("connections") {
        let part = Part::new(&args, &client, &version, None, connections_heading)?;
        append(&mut report, &connections::section(&part).await?);
    }
    if args.runs("soak") {
        let part = Part::new(&args, &client, &version, None, part_heading)?;
        append(&mut report, &soak::section(&part).await?);
    }
    println!("{report}");
    if let Some(out) = &args.out {
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let written = if args.append {
            let before = std::fs::read_to_string(out).unwrap_or_default();
            let mut all = before.trim_end().to_owned();
            all.push('\n');
            append(&mut all, &report);
            all
        } else {
            report
        };
        std::fs::write(out, &written).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("bench: report written to {}", out.display());
    }
    Ok(())
}

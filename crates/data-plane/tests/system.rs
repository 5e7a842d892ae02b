//! System test through a real Kafka-protocol broker started by the harness: replay real data,
//! read `market_events` and `ofi_events` back with an independent consumer, and check counts and
//! OFI values against an independent computation.

#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use common::codec;
use common::config::AppConfig;
use common::events::{MarketEvent, OfiEvent};
use common::topics::{MARKET_EVENTS, OFI_EVENTS};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rust_decimal::Decimal;
use test_support::{Broker, http_get, metric, unique, wait_for};
use tokio_util::sync::CancellationToken;

const ROWS: usize = 20_000;

/// The first `ROWS` rows of the spot sample, plus one malformed row and one crossed quote.
fn fixture(dir: &Path) -> (std::path::PathBuf, Vec<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/binance-spot-btcusdt-ethusdt-2024-08-09.csv");
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines: Vec<String> = text.lines().take(ROWS + 1).map(str::to_owned).collect();
    let ts = lines[2].split(',').next().unwrap().to_owned();
    lines.insert(3, format!("{ts},BTCUSDT,quote,61690,1,61680,1,,,"));
    lines.insert(4, "this,is,not,a,row".to_owned());
    let path = dir.join("fixture.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, lines)
}

#[derive(Debug, PartialEq, Eq)]
struct Expected {
    ofi: Decimal,
    n_quotes: u32,
    mid_close: Decimal,
}

/// OFI by the formula, straight from the CSV text: a second implementation to check the first.
fn independent_ofi(lines: &[String]) -> BTreeMap<(String, u64), Expected> {
    let mut prev: BTreeMap<String, [Decimal; 4]> = BTreeMap::new();
    let mut windows: BTreeMap<(String, u64), Expected> = BTreeMap::new();
    for line in &lines[1..] {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 10 || f[2] != "quote" {
            continue;
        }
        let n: Vec<Decimal> = f[3..7].iter().map(|s| Decimal::from_str(s).unwrap()).collect();
        let (bp, bq, ap, aq) = (n[0], n[1], n[2], n[3]);
        if bp >= ap {
            continue;
        }
        let ts: u64 = f[0].parse().unwrap();
        let e = match prev.get(f[1]) {
            None => Decimal::ZERO,
            Some([pbp, pbq, pap, paq]) => {
                let mut e = Decimal::ZERO;
                if bp >= *pbp {
                    e += bq
                }
                if bp <= *pbp {
                    e -= pbq
                }
                if ap <= *pap {
                    e -= aq
                }
                if ap >= *pap {
                    e += paq
                }
                e
            }
        };
        prev.insert(f[1].to_owned(), [bp, bq, ap, aq]);
        let w = windows.entry((f[1].to_owned(), ts / 1_000_000_000)).or_insert(Expected {
            ofi: Decimal::ZERO,
            n_quotes: 0,
            mid_close: Decimal::ZERO,
        });
        w.ofi += e;
        w.n_quotes += 1;
        w.mid_close = ((bp + ap) / Decimal::TWO).normalize();
    }
    windows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_through_the_broker_and_reads_back_exact_ofi() {
    let broker = Broker::shared();
    let dir = tempfile::tempdir().unwrap();
    let (path, lines) = fixture(dir.path());

    let mut cfg = AppConfig::default();
    cfg.log.dir = "".into();
    cfg.kafka.bootstrap_servers = broker.bootstrap();
    cfg.kafka.topic_prefix = unique("sys_");
    cfg.kafka.partitions = 2;
    cfg.data_plane.replay.path = path;
    cfg.data_plane.replay.speed = "max".into();
    cfg.app.instance_id = "system-test".into();
    cfg.validate().unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let plane = tokio::spawn(data_plane::run(cfg.clone(), listener, shutdown.clone()));

    let metrics = tokio::task::spawn_blocking(move || {
        wait_for(Duration::from_secs(180), "replay_complete = 1", || {
            let (_, body) = http_get(http, "/metrics").ok()?;
            (metric(&body, "data_plane_replay_complete") == Some(1.0)).then_some(body)
        })
    })
    .await
    .unwrap();
    assert_eq!(metric(&metrics, "data_plane_messages_processed_total"), Some((ROWS + 2) as f64));
    assert_eq!(metric(&metrics, "data_plane_malformed_rows_total"), Some(1.0));
    assert_eq!(metric(&metrics, "data_plane_quality_rejections_total{reason=\"crossed_book\"}"), Some(1.0));
    assert_eq!(http_get(http, "/health/ready").unwrap().0, 200);
    assert_eq!(http_get(http, "/health/live").unwrap().0, 200);

    let expected = independent_ofi(&lines);
    let published_market =
        metric(&metrics, &format!("data_plane_events_published_total{{topic=\"{MARKET_EVENTS}\"}}")).unwrap();
    // Every valid row once, then the end of the input for each of the fixture's two symbols.
    assert_eq!(published_market, (ROWS + 2) as f64, "every valid row is published once");
    let windows_total = metric(&metrics, "data_plane_ofi_windows_total").unwrap() as usize;

    // Read both topics back with a consumer of our own.
    let consumer = common::kafka::consumer(&cfg.kafka, &unique("reader_"), "system-test-reader").unwrap();
    consumer.subscribe(&[&cfg.kafka.topic(MARKET_EVENTS), &cfg.kafka.topic(OFI_EVENTS)]).unwrap();
    let (mut market, mut ended, mut heartbeats) = (0usize, 0usize, 0usize);
    let mut ids = HashSet::new();
    let mut got: BTreeMap<(String, u64), Expected> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while market + ended < ROWS + 2 || got.len() + heartbeats < windows_total {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("read {market} market events and {} windows before timing out", got.len()))
            .unwrap();
        let key = std::str::from_utf8(msg.key().unwrap()).unwrap().to_owned();
        let bytes = msg.payload().unwrap();
        if msg.topic().ends_with(MARKET_EVENTS) {
            let env = codec::decode::<MarketEvent>(bytes).unwrap();
            assert_eq!(env.payload.symbol().as_str(), key, "records are keyed by symbol");
            assert!(ids.insert(env.event_id), "event ids are unique");
            match env.payload {
                MarketEvent::Status(s) if s.status == common::events::FeedStatus::Ended => ended += 1,
                _ => market += 1,
            }
        } else {
            let env = codec::decode::<OfiEvent>(bytes).unwrap();
            let OfiEvent::Window(w) = env.payload;
            assert_eq!(w.symbol.as_str(), key);
            // A heartbeat (a quiet second) is not a measurement: the independent computation has none.
            if w.n_quotes == 0 {
                heartbeats += 1;
                continue;
            }
            assert!(env.causation_id.is_some());
            let previous = got.insert(
                (key, w.window_start.0 / 1_000_000_000),
                Expected { ofi: w.ofi, n_quotes: w.n_quotes, mid_close: w.mid_close },
            );
            assert!(previous.is_none(), "one record per symbol and window");
        }
    }
    assert_eq!((market, ended), (ROWS, 2));
    let differing: Vec<_> = expected.iter().filter(|(k, v)| got.get(*k) != Some(*v)).take(5).collect();
    assert!(differing.is_empty(), "windows differing from the independent computation: {differing:?}");
    assert_eq!(got.len(), expected.len());

    shutdown.cancel();
    plane.await.unwrap().unwrap();
}

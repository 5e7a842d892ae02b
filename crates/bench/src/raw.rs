//! The broker's own limit: a bare rdkafka producer and consumers moving the same records (same
//! keys, same bytes, same count) through the same broker, with the planes' producer settings
//! and no platform code in between.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::config::KafkaConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// One record to move: its key and its bytes.
pub type Record = (String, Vec<u8>);

/// What one bare run measured.
#[derive(Debug, Clone, Copy)]
pub struct RawRate {
    /// Records produced (and consumed by every consumer).
    pub records: usize,
    /// From the first send to the last record received by the slowest consumer.
    pub seconds: f64,
}

impl RawRate {
    /// Records per second.
    pub fn per_second(&self) -> f64 {
        self.records as f64 / self.seconds
    }
}

/// Produces `records` to a new topic `topic` (the planes' partition count) and reads them back
/// with `consumers` independent consumers at once, as many as read `market_events` in the
/// pipeline, so the broker serves the same fan-out.
pub fn measure(cfg: &KafkaConfig, topic: &str, records: &Arc<Vec<Record>>, consumers: usize) -> Result<RawRate> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let partitions = runtime
        .block_on(common::kafka::ensure_topics(cfg, &[topic.to_owned()]))?
        .get(topic)
        .copied()
        .context("topic not created")?;
    let n = records.len();
    let readers: Vec<_> = (0..consumers)
        .map(|i| {
            let (cfg, topic) = (cfg.clone(), topic.to_owned());
            std::thread::spawn(move || consume(&cfg, &topic, partitions, n, i))
        })
        .collect();
    // Let the consumers connect and issue their first fetch before the clock starts.
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    produce(cfg, topic, records)?;
    let mut last = start;
    for r in readers {
        let done = r.join().map_err(|_| anyhow::anyhow!("consumer thread panicked"))??;
        last = last.max(done);
    }
    Ok(RawRate { records: n, seconds: (last - start).as_secs_f64() })
}

/// Produces every record on a plain threaded producer with the planes' settings.
fn produce(cfg: &KafkaConfig, topic: &str, records: &[Record]) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        common::kafka::producer_config(cfg, "bench-raw").create()?;
    for (key, payload) in records {
        loop {
            match producer.send(BaseRecord::to(topic).key(key.as_str()).payload(payload.as_slice())) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => bail!("produce failed: {e}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Reads `n` records from every partition of `topic`; returns when the last one arrived. Uses
/// the planes' consumer fetch setting; offsets are neither stored nor committed.
fn consume(cfg: &KafkaConfig, topic: &str, partitions: i32, n: usize, index: usize) -> Result<Instant> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string())
        .set("group.id", format!("bench-raw-{index}-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut seen = 0usize;
    let mut last = Instant::now();
    let mut idle_since = Instant::now();
    while seen < n {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => {
                seen += 1;
                last = Instant::now();
                idle_since = last;
            }
            Some(Err(e)) => bail!("consume failed: {e}"),
            None if idle_since.elapsed() > Duration::from_secs(120) => {
                bail!("consumer {index} stalled at {seen} of {n} records")
            }
            None => {}
        }
    }
    Ok(last)
}

/// One hop through the broker for a bare client: `count` records of `size` bytes produced at
/// `rate` per second, each carrying its send time (wall clock, ns) in its first 8 bytes; the
/// consumer's receive time minus that is the sample (ns). The floor of any latency that crosses
/// the broker once with these settings.
pub fn hop_latency(cfg: &KafkaConfig, topic: &str, rate: f64, count: usize, size: usize) -> Result<Vec<u64>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let partitions = runtime
        .block_on(common::kafka::ensure_topics(cfg, &[topic.to_owned()]))?
        .get(topic)
        .copied()
        .context("topic not created")?;
    // The consumer says when the warm-up record has reached it: only then is it fetching at its
    // steady pace. Samples taken before (while it joins and starts fetching) measured start-up,
    // not the hop, and made up the whole tail (p99 1.5 s with a 12 ms median).
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let reader = {
        let (cfg, topic) = (cfg.clone(), topic.to_owned());
        std::thread::spawn(move || -> Result<Vec<u64>> {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &cfg.bootstrap_servers)
                .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string())
                .set("group.id", format!("bench-hop-{}", std::process::id()))
                .set("enable.auto.commit", "false")
                .create()?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
            }
            consumer.assign(&tpl)?;
            let mut samples = Vec::with_capacity(count);
            let deadline = Instant::now() + Duration::from_secs(120);
            while samples.len() < count && Instant::now() < deadline {
                if let Some(msg) = consumer.poll(Duration::from_millis(100)) {
                    let now = wall_ns();
                    let bytes = rdkafka::Message::payload(&msg?).unwrap_or_default().get(..8).map(|b| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(b);
                        u64::from_le_bytes(a)
                    });
                    match bytes {
                        Some(0) => {
                            let _ = ready_tx.send(());
                        }
                        Some(sent) => samples.push(now.saturating_sub(sent)),
                        None => {}
                    }
                }
            }
            Ok(samples)
        })
    };
    let producer: ThreadedProducer<DefaultProducerContext> =
        common::kafka::producer_config(cfg, "bench-raw").create()?;
    let mut payload = vec![b'x'; size.max(8)];
    // The idempotent producer's first record waits for its producer id; keep that out of the
    // samples (a zero send time marks it) and wait for it to arrive.
    payload[..8].copy_from_slice(&0u64.to_le_bytes());
    producer
        .send(BaseRecord::to(topic).key("warm-up").payload(payload.as_slice()))
        .map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
    producer.flush(Duration::from_secs(30))?;
    ready_rx.recv_timeout(Duration::from_secs(60)).context("the hop consumer never received the warm-up record")?;
    let start = Instant::now();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&wall_ns().to_le_bytes());
        let key = if i.is_multiple_of(2) { "BTCUSDT" } else { "ETHUSDT" };
        producer
            .send(BaseRecord::to(topic).key(key).payload(payload.as_slice()))
            .map_err(|(e, _)| anyhow::anyhow!("produce failed: {e}"))?;
    }
    producer.flush(Duration::from_secs(30))?;
    reader.join().map_err(|_| anyhow::anyhow!("consumer thread panicked"))?
}

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

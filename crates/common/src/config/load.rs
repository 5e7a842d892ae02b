//! Loading: files, `.env` and environment merged into an [`AppConfig`], with every unknown key
//! and mistyped value collected before validation.

use std::collections::BTreeSet;
use std::path::Path;

use config::{Config, File, FileFormat, Value, ValueKind};

use super::{AppConfig, AppSection, ConfigError, ENV_KEYS, ENV_PREFIX, FieldError};

/// Loads the configuration the way the binaries do: files under `config_dir`, then `.env` from
/// the working directory, then the process environment.
pub fn load(config_dir: &Path) -> Result<AppConfig, ConfigError> {
    load_with(config_dir, &[])
}

/// Loads as [`load`] does, then sets `overrides` (dotted keys such as
/// `strategy_plane.risk_aversion`, later wins) over every other layer: a command line's `--set`.
/// They go through the `ALGOTRADER__<SECTION>__<KEY>` path, so an unknown key or a bad value is
/// reported by its field like any other.
pub fn load_with(config_dir: &Path, overrides: &[(String, String)]) -> Result<AppConfig, ConfigError> {
    let mut vars: Vec<(String, String)> = match dotenvy::from_path_iter(".env") {
        Ok(iter) => {
            iter.enumerate().map(|(n, entry)| entry.map_err(|e| env_file_error(n, &e))).collect::<Result<_, _>>()?
        }
        Err(e) if e.not_found() => Vec::new(),
        Err(e) => return Err(env_file_error(0, &e)),
    };
    let misspelt = misspelt_names(vars.iter().map(|(name, _)| name.as_str()));
    // Variables that are not UTF-8 cannot be ours; skip them instead of panicking.
    vars.extend(std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))));
    vars.extend(overrides.iter().map(|(key, value)| override_var(key, value)));
    match (load_from(config_dir, &vars), misspelt.is_empty()) {
        (Ok(cfg), true) => Ok(cfg),
        (Ok(_), false) => Err(ConfigError::Invalid(misspelt)),
        (Err(ConfigError::Invalid(mut errors)), _) => {
            errors.extend(misspelt);
            Err(ConfigError::Invalid(errors))
        }
        (Err(e), _) => Err(e),
    }
}

/// The generic environment name and value that set the dotted `key`.
pub fn override_var(key: &str, value: &str) -> (String, String) {
    (format!("{ENV_PREFIX}{}", key.to_ascii_uppercase().replace('.', "__")), value.to_owned())
}

/// A `.env` that cannot be read, said without quoting its line: the line may hold a secret.
fn env_file_error(entry: usize, e: &dotenvy::Error) -> ConfigError {
    match e {
        dotenvy::Error::LineParse(_, at) => ConfigError::Load(format!(
            ".env: entry {} cannot be parsed at character {at} (its text is not shown: it may hold a secret)",
            entry + 1
        )),
        other => ConfigError::Load(format!(".env: {other}")),
    }
}

/// Names the helper scripts and docker-compose read from `.env`: not configuration, never flagged.
const OPERATIONS_NAMES: &[&str] = &[
    "GRAFANA_ADMIN_PASSWORD",
    "PROMETHEUS_PORT",
    "BROKER_PORT",
    "KAFKA_CONTROLLER_PORT",
    "KAFKA_NODES",
    "KAFKA_PORTS",
    "KAFKA_CONTROLLER_PORTS",
    "KAFKA_HEAP",
    "KAFKA_OPTS",
    "KAFKA_CACHE",
    "INSTALL_DEV",
    "RUN_DIR",
    "NO_BUILD",
];

/// `.env` names one or two edits from a documented name (`KILL_SWITHC`, `MAX_GROSS_EXPOSUR`): a
/// typo there was silently ignored, so the setting it meant kept its default.
fn misspelt_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for name in names {
        if ENV_KEYS.iter().any(|(n, _)| *n == name) || name.starts_with(ENV_PREFIX) || OPERATIONS_NAMES.contains(&name)
        {
            continue;
        }
        let closest = ENV_KEYS.iter().map(|(n, _)| (strsim::osa_distance(n, name), *n)).min();
        if let Some((_, documented)) = closest.filter(|(distance, _)| *distance <= 2) {
            errors.push(FieldError {
                field: format!(".env {name}"),
                message: format!("not a documented name; did you mean {documented}?"),
            });
        }
    }
    errors
}

/// Loads the configuration from `config_dir` and the given environment variables (later entries
/// win). The environment is an argument so tests never touch the process's own.
pub fn load_from(config_dir: &Path, vars: &[(String, String)]) -> Result<AppConfig, ConfigError> {
    let mut errors = Vec::new();
    let mut overrides: Vec<(String, String)> = Vec::new();
    for (name, value) in vars {
        if let Some((_, key)) = ENV_KEYS.iter().find(|(n, _)| n == name) {
            overrides.push(((*key).to_owned(), value.clone()));
        } else if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
            let key = rest.to_ascii_lowercase().replace("__", ".");
            overrides.push((key, value.clone()));
        }
    }
    let app_env = overrides
        .iter()
        .rev()
        .find(|(k, _)| k == "app.env")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| AppSection::default().env);
    if app_env.is_empty() || !app_env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        errors.push(FieldError {
            field: "app.env".into(),
            message: format!("{app_env:?} must be a plain name such as development or production"),
        });
    }

    let env_file_ok = errors.is_empty();
    let build = |fixes: &[(String, Value)]| -> Result<Config, ConfigError> {
        let mut b = Config::builder()
            .add_source(File::from(config_dir.join("default.toml")).format(FileFormat::Toml).required(true));
        if env_file_ok {
            b = b.add_source(
                File::from(config_dir.join(format!("{app_env}.toml"))).format(FileFormat::Toml).required(false),
            );
        }
        for (k, v) in &overrides {
            b = b.set_override(k.as_str(), v.as_str()).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        for (k, v) in fixes {
            b = b.set_override(k.as_str(), v.clone()).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        b.build().map_err(|e| ConfigError::Load(e.to_string()))
    };

    let merged = build(&[])?;
    let known = known_keys();
    let mut present = Vec::new();
    leaf_keys(&merged.cache, "", &mut present);
    for key in &present {
        if !known.contains(key.as_str()) {
            errors.push(FieldError { field: key.clone(), message: "unknown key".into() });
        }
    }

    // Type errors: serde stops at the first, so replace each bad field by its default and retry
    // until the whole tree deserializes, collecting one error per field.
    let defaults = serde_json::to_value(AppConfig::default()).map_err(|e| ConfigError::Load(e.to_string()))?;
    let mut fixes: Vec<(String, Value)> = Vec::new();
    let mut cfg = merged;
    let parsed = loop {
        let unknown_free = strip_unknown(&cfg, &known)?;
        match unknown_free.try_deserialize::<AppConfig>() {
            Ok(parsed) => break parsed,
            Err(e) => {
                let (field, message) = split_type_error(&e);
                let Some(field) = field.filter(|f| !fixes.iter().any(|(k, _)| k == f)) else {
                    errors.push(FieldError { field: "config".into(), message });
                    return Err(ConfigError::Invalid(errors));
                };
                let default = json_at(&defaults, &field).map(json_to_value).unwrap_or(Value::from(""));
                errors.push(FieldError { field: field.clone(), message });
                fixes.push((field, default));
                cfg = build(&fixes)?;
            }
        }
    };
    if let Err(ConfigError::Invalid(more)) = parsed.validate() {
        // A field already reported as mistyped holds a stand-in default; do not blame it twice.
        errors.extend(more.into_iter().filter(|m| !fixes.iter().any(|(k, _)| *k == m.field)));
    }
    if errors.is_empty() { Ok(parsed) } else { Err(ConfigError::Invalid(errors)) }
}

fn known_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    if let Ok(v) = serde_json::to_value(AppConfig::default()) {
        json_leaf_keys(&v, "", &mut keys);
    }
    keys
}

fn json_leaf_keys(v: &serde_json::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                json_leaf_keys(child, &join(prefix, k), out);
            }
        }
        _ => {
            out.insert(prefix.to_owned());
        }
    }
}

fn leaf_keys(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match &v.kind {
        ValueKind::Table(map) => {
            for (k, child) in map {
                leaf_keys(child, &join(prefix, k), out);
            }
        }
        _ if !prefix.is_empty() => out.push(prefix.to_owned()),
        _ => {}
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

/// A copy of `cfg` holding only known keys, so that deserialization reports type errors only.
fn strip_unknown(cfg: &Config, known: &BTreeSet<String>) -> Result<Config, ConfigError> {
    let mut present = Vec::new();
    leaf_keys(&cfg.cache, "", &mut present);
    let mut b = Config::builder();
    for key in present.iter().filter(|k| known.contains(k.as_str())) {
        let value: Value = cfg.get(key).map_err(|e| ConfigError::Load(e.to_string()))?;
        b = b.set_override(key.as_str(), value).map_err(|e| ConfigError::Load(e.to_string()))?;
    }
    b.build().map_err(|e| ConfigError::Load(e.to_string()))
}

fn split_type_error(e: &config::ConfigError) -> (Option<String>, String) {
    match e {
        config::ConfigError::Type { key, unexpected, expected, .. } => {
            (key.clone(), format!("expected {expected}, got {unexpected}"))
        }
        other => {
            // Errors raised inside a field's own deserializer (decimals) carry the key in text:
            // "... for key `risk.max_gross_exposure`".
            let text = other.to_string();
            let key =
                text.rsplit_once("for key `").and_then(|(_, rest)| rest.split_once('`')).map(|(k, _)| k.to_owned());
            let message = text.split(" for key `").next().unwrap_or(&text).to_owned();
            (key, message)
        }
    }
}

fn json_at<'a>(v: &'a serde_json::Value, dotted: &str) -> Option<&'a serde_json::Value> {
    dotted.split('.').try_fold(v, |v, k| v.get(k))
}

fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::from(i),
            (_, Some(u), _) => Value::from(u),
            (_, _, Some(f)) => Value::from(f),
            _ => Value::from(n.to_string()),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        other => Value::from(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ReplaySpeed;
    use rust_decimal::dec;
    use std::path::PathBuf;

    fn dir_with(default_toml: &str, extra: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("default.toml"), default_toml).unwrap();
        for (name, body) in extra {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config")
    }

    #[test]
    fn shipped_defaults_load_and_validate() {
        let cfg = load_from(&shipped_dir(), &[]).unwrap();
        assert_eq!(cfg.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(cfg.data_plane.http_port, 8000);
        assert!(cfg.trading.enable_paper_trading);
        assert!(!cfg.trading.enable_live_trading);
    }

    #[test]
    fn a_dotted_override_sets_its_field_and_an_unknown_one_is_named() {
        let set =
            [override_var("strategy_plane.risk_aversion", "1000"), override_var("data_plane.replay.loop_count", "2")];
        let cfg = load_from(&shipped_dir(), &set).unwrap();
        assert_eq!((cfg.strategy_plane.risk_aversion, cfg.data_plane.replay.loop_count), (1000.0, 2));
        let bad = [override_var("strategy_plane.risk_aversio", "1"), override_var("risk.max_gross_exposure", "lots")];
        let fields =
            load_from(&shipped_dir(), &bad).unwrap_err().fields().into_iter().map(str::to_owned).collect::<Vec<_>>();
        assert!(fields.contains(&"strategy_plane.risk_aversio".to_owned()), "{fields:?}");
        assert!(fields.contains(&"risk.max_gross_exposure".to_owned()), "{fields:?}");
    }

    #[test]
    fn the_topic_prefix_namespaces_topics_and_consumer_groups_alike() {
        let plain = load_from(&shipped_dir(), &[]).unwrap();
        assert_eq!(plain.kafka.group(crate::topics::STRATEGY_PLANE_GROUP), "strategy-plane");
        let paper = load_from(&shipped_dir(), &env(&[("KAFKA_TOPIC_PREFIX", "paper.")])).unwrap();
        assert_eq!(paper.kafka.topic(crate::topics::ORDER_INTENTS), "paper.order_intents");
        assert_eq!(paper.kafka.group(crate::topics::ORDER_PLANE_GROUP), "paper.order-plane");
    }

    /// `KILL_SWITHC=true` and `MAX_GROSS_EXPOSUR=1` in `.env` were silently ignored.
    #[test]
    fn a_misspelt_env_file_name_is_named_with_the_one_it_meant() {
        let names = [
            "KILL_SWITHC",
            "MAX_GROSS_EXPOSUR",
            "KILL_SWITCH",
            "GRAFANA_ADMIN_PASSWORD",
            "HOME",
            "ALGOTRADER__KAFKA__LINGER_MS",
        ];
        let errors = misspelt_names(names.into_iter());
        let said: Vec<(&str, &str)> = errors.iter().map(|e| (e.field.as_str(), e.message.as_str())).collect();
        assert_eq!(
            said,
            [
                (".env KILL_SWITHC", "not a documented name; did you mean KILL_SWITCH?"),
                (".env MAX_GROSS_EXPOSUR", "not a documented name; did you mean MAX_GROSS_EXPOSURE?"),
            ]
        );
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.example");
        let vars: Vec<(String, String)> = dotenvy::from_path_iter(example).unwrap().map(Result::unwrap).collect();
        assert!(misspelt_names(vars.iter().map(|(k, _)| k.as_str())).is_empty(), "every shipped name is known");
    }

    /// A `.env` parse error printed the whole line, secret included.
    #[test]
    fn an_unparsable_env_file_line_is_not_quoted() {
        let error = env_file_error(4, &dotenvy::Error::LineParse("ADMIN_TOKEN=s3cret-value'".into(), 12));
        let text = error.to_string();
        assert!(!text.contains("s3cret") && !text.contains("ADMIN_TOKEN"), "{text}");
        assert!(text.contains("entry 5") && text.contains("character 12"), "{text}");
    }

    #[test]
    fn the_shipped_env_example_is_valid() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.env.example");
        let vars: Vec<(String, String)> = dotenvy::from_path_iter(example).unwrap().map(Result::unwrap).collect();
        assert!(vars.iter().any(|(k, _)| k == "MAX_GROSS_EXPOSURE"));
        let cfg = load_from(&shipped_dir(), &vars).unwrap();
        assert!(cfg.trading.enable_paper_trading && !cfg.trading.enable_live_trading);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = dir_with(
            "[kafka]\nlinger_ms = 7\npartitions = 2\n[log]\nlevel = \"warn\"\n",
            &[("staging.toml", "[kafka]\nlinger_ms = 9\n")],
        );
        let cfg = load_from(
            dir.path(),
            &env(&[("APP_ENV", "staging"), ("KAFKA_TOPIC_PARTITIONS", "6"), ("ALGOTRADER__LOG__LEVEL", "debug")]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.linger_ms, 9, "the APP_ENV file overrides default.toml");
        assert_eq!(cfg.kafka.partitions, 6, "the environment overrides files");
        assert_eq!(cfg.log.level, "debug");
    }

    #[test]
    fn documented_env_names_work() {
        let dir = dir_with("", &[]);
        let cfg = load_from(
            dir.path(),
            &env(&[
                ("KAFKA_BOOTSTRAP_SERVERS", "broker:29092"),
                ("IBKR_HOST", "gw"),
                ("IBKR_PORT", "4002"),
                ("IBKR_CLIENT_ID", "9"),
                ("MAX_GROSS_EXPOSURE", "250000.50"),
                ("MAX_NET_EXPOSURE", "100000"),
                ("MAX_POSITION_SIZE", "50000"),
                // Paper off alone is refused (nothing would say how orders trade): the whole
                // live opt-in, as documented.
                ("ENABLE_PAPER_TRADING", "false"),
                ("ENABLE_LIVE_TRADING", "true"),
                ("APP_ENV", "production"),
                ("REPLAY_SPEED", "10x"),
                ("OFI_WINDOW_MS", "500"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.kafka.bootstrap_servers, "broker:29092");
        assert_eq!((cfg.ibkr.host.as_str(), cfg.ibkr.port, cfg.ibkr.client_id), ("gw", 4002, 9));
        assert_eq!(cfg.risk.max_gross_exposure, dec!(250000.50));
        assert!(!cfg.trading.enable_paper_trading);
        assert_eq!(cfg.replay_speed(), ReplaySpeed::Factor(10.0));
        assert_eq!(cfg.data_plane.ofi.window_ms, 500);
    }

    #[test]
    fn every_bad_field_is_named_at_once() {
        let dir = dir_with("[kafka]\nlingerr_ms = 5\n[nonsense]\nx = 1\n", &[]);
        let err = load_from(
            dir.path(),
            &env(&[
                ("IBKR_PORT", "seventy"),
                ("MAX_GROSS_EXPOSURE", "lots"),
                ("OFI_WINDOW_MS", "0"),
                ("REPLAY_SPEED", "fast"),
                ("KAFKA_TOPIC_PARTITIONS", "-1"),
                ("ALGOTRADER__DATA_PLANE__QUALITY__NOPE", "1"),
            ]),
        )
        .unwrap_err();
        let mut fields = err.fields();
        fields.sort_unstable();
        assert_eq!(
            fields,
            vec![
                "data_plane.ofi.window_ms",
                "data_plane.quality.nope",
                "data_plane.replay.speed",
                "ibkr.port",
                "kafka.lingerr_ms",
                "kafka.partitions",
                "nonsense.x",
                "risk.max_gross_exposure",
            ],
            "{err}"
        );
    }

    #[test]
    fn the_shipped_samples_pay_binance_spot_fees_and_bad_schedules_are_named() {
        let cfg = load_from(&shipped_dir(), &[]).unwrap();
        let binance = crate::config::FeeSchedule::Bps { maker_bps: dec!(10), taker_bps: dec!(10) };
        assert!(cfg.instruments.iter().all(|i| i.fees == binance), "{:?}", cfg.instruments);
        let instrument = |fees: &str| {
            format!(
                "[[instruments]]\nsymbol = \"X\"\ntick_size = \"0.01\"\nlot_size = \"1\"\nmin_qty = \"1\"\nmin_notional = \"0\"\n{fees}\n"
            )
        };
        let without = dir_with(&instrument(""), &[]);
        let cfg = load_from(without.path(), &[]).unwrap();
        assert_eq!(cfg.instruments[0].fees, crate::config::FeeSchedule::IbkrTiered, "today's rule by default");
        let negative = dir_with(&instrument("fees = { model = \"bps\", maker_bps = \"-1\", taker_bps = \"10\" }"), &[]);
        let err = load_from(negative.path(), &[]).unwrap_err();
        assert_eq!(err.fields(), vec!["instruments[0].fees.maker_bps"], "{err}");
        let incomplete = dir_with(&instrument("fees = { model = \"bps\", maker_bps = \"1\" }"), &[]);
        let err = load_from(incomplete.path(), &[]).unwrap_err();
        assert!(err.to_string().contains("taker_bps"), "{err}");
    }

    #[test]
    fn limits_must_be_consistent() {
        let dir = dir_with("", &[]);
        let err = load_from(dir.path(), &env(&[("MAX_GROSS_EXPOSURE", "10"), ("MAX_NET_EXPOSURE", "20")])).unwrap_err();
        let fields = err.fields();
        assert!(fields.contains(&"risk.max_net_exposure"), "{err}");
        assert!(fields.contains(&"risk.max_position_size"), "{err}");
    }

    #[test]
    fn a_missing_default_file_is_a_load_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load_from(dir.path(), &[]), Err(ConfigError::Load(_))));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let dir = dir_with("", &[]);
        let cfg = load_from(dir.path(), &env(&[("IBKR_ACCOUNT", "DU1234567")])).unwrap();
        assert_eq!(cfg.ibkr.account.expose(), "DU1234567");
        assert!(!format!("{cfg:?}").contains("DU1234567"));
    }

    #[test]
    fn replay_speed_forms() {
        assert_eq!(ReplaySpeed::parse("max"), Some(ReplaySpeed::Max));
        assert_eq!(ReplaySpeed::parse("realtime"), Some(ReplaySpeed::Factor(1.0)));
        assert_eq!(ReplaySpeed::parse("0.5x"), Some(ReplaySpeed::Factor(0.5)));
        assert_eq!(ReplaySpeed::parse("0x"), None);
        assert_eq!(ReplaySpeed::parse("1e-300x"), None);
        assert_eq!(ReplaySpeed::parse("1e9x"), None);
        assert_eq!(ReplaySpeed::parse("fast"), None);
    }
}

//! Avro trades in the Confluent wire format: `0x00`, a 4-byte big-endian schema id, then
//! the Avro binary encoding of one record.
//!
//! The schema is `schemas/trade.avsc`: `s` string, `p` and `v` exact decimals (bytes,
//! scale 8: the value in 10^-8 units as a big-endian two's-complement integer, so no
//! price ever goes through a double), `t` long timestamp-millis, `c` null or an array of
//! strings. Records written with that schema (the usual case, and always when there is
//! no registry) are decoded by a hand-written reader of exactly that layout. A record
//! whose schema id names another schema in the registry (`SCHEMA_REGISTRY_URL`) is
//! decoded generically with that writer schema by `apache-avro`, and its fields are read
//! by name: `p` and `v` may then also be decimals of another scale, doubles, longs or
//! decimal strings, `t` a long or an int.
//!
//! The checks are SPEC 2's, in its order: `s`, `p`, `v`, `t` present with a usable type
//! (else `missing_field`), then their values. A record that is not Avro in the wire
//! format (wrong magic byte, truncated, trailing bytes, unknown schema id) is rejected as
//! `invalid_json` — SPEC 2's reason for a record that cannot be read at all — with a
//! detail that says it is Avro.

use super::registry::{Registry, RegistryError, WriterSchema};
use apache_avro::Schema;
use apache_avro::types::Value;
use std::sync::{Arc, OnceLock};
use tradeflow_model::decimal::parse_json_number;
use tradeflow_model::{Conditions, Price, Qty, RejectReason, Symbol, Trade, UNITS_LIMIT, ts_in_range};

/// The text of `schemas/trade.avsc`.
pub const TRADE_SCHEMA: &str = include_str!("../../../schemas/trade.avsc");

/// `schemas/trade.avsc`, parsed.
pub fn trade_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse_str(TRADE_SCHEMA).expect("schemas/trade.avsc is a valid Avro schema"))
}

/// The magic byte of the Confluent wire format.
pub const MAGIC: u8 = 0;

/// One decoded Avro record: a trade, or why not.
#[derive(Debug, PartialEq)]
pub enum AvroRecord {
    /// A valid trade (lateness is decided later).
    Trade(Trade),
    /// A rejected record: reason, detail, and a readable payload.
    Reject(RejectReason, String, String),
}

/// Appends `trade` in the wire format with `schema_id` and `schemas/trade.avsc`.
pub fn encode_trade(out: &mut Vec<u8>, schema_id: u32, trade: &Trade) {
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    put_bytes(out, trade.symbol.as_str().as_bytes());
    put_decimal(out, trade.price.units());
    put_long(out, trade.ts);
    put_decimal(out, trade.volume.units());
    let mut list = Vec::new();
    if trade.conditions.for_each(|c| list.push(c.to_owned())) {
        put_long(out, 1);
        if !list.is_empty() {
            put_long(out, list.len() as i64);
            for c in &list {
                put_bytes(out, c.as_bytes());
            }
        }
        put_long(out, 0);
    } else {
        put_long(out, 0);
    }
}

fn put_long(out: &mut Vec<u8>, value: i64) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_long(out, bytes.len() as i64);
    out.extend_from_slice(bytes);
}

/// A decimal's unscaled value in the fewest two's-complement bytes.
fn put_decimal(out: &mut Vec<u8>, units: i64) {
    let bytes = units.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    put_bytes(out, &bytes[start..]);
}

/// Decodes Avro values, resolving schema ids through the registry (if any).
pub struct AvroDecoder {
    registry: Option<Arc<Registry>>,
}

impl AvroDecoder {
    /// A decoder; `registry` resolves schema ids (without one, every id means
    /// `schemas/trade.avsc`).
    pub fn new(registry: Option<Arc<Registry>>) -> AvroDecoder {
        AvroDecoder { registry }
    }

    /// Decodes one value. `Err` only when the registry cannot be reached at all (the run
    /// must stop rather than dead-letter everything).
    pub fn decode(&self, value: &[u8]) -> Result<AvroRecord, RegistryError> {
        if value.len() < 5 || value[0] != MAGIC {
            let what = if value.is_empty() {
                "it is empty".to_owned()
            } else if value[0] != MAGIC {
                format!("its first byte is 0x{:02x}, not the magic byte 0x00", value[0])
            } else {
                format!("it has {} bytes, fewer than the 5 of the header", value.len())
            };
            return Ok(unreadable(format!("not Avro in the Confluent wire format: {what}"), value));
        }
        let id = u32::from_be_bytes([value[1], value[2], value[3], value[4]]);
        let body = &value[5..];
        let writer = match &self.registry {
            None => None,
            Some(registry) => match registry.schema(id)? {
                Some(writer) => Some(writer),
                None => {
                    let detail = format!("Avro schema id {id} is not in the schema registry {}", registry.url());
                    return Ok(unreadable(detail, value));
                }
            },
        };
        Ok(match writer.as_deref() {
            None | Some(WriterSchema::Trade) => decode_trade(body).unwrap_or_else(|e| {
                unreadable(format!("invalid Avro (schema id {id}, schemas/trade.avsc): {e}"), value)
            }),
            Some(WriterSchema::Other(schema)) => {
                let mut reader = body;
                match apache_avro::from_avro_datum(schema, &mut reader, None) {
                    Ok(_) if !reader.is_empty() => unreadable(
                        format!("invalid Avro (schema id {id}): {} bytes after the record", reader.len()),
                        value,
                    ),
                    Ok(record) => from_value(schema, record),
                    Err(e) => unreadable(format!("invalid Avro (schema id {id}): {e}"), value),
                }
            }
        })
    }
}

/// A record that cannot be read: its bytes in hex as the payload.
fn unreadable(detail: String, value: &[u8]) -> AvroRecord {
    let mut payload = String::with_capacity(5 + 2 * value.len());
    payload.push_str("avro:");
    for b in value {
        payload.push_str(&format!("{b:02x}"));
    }
    AvroRecord::Reject(RejectReason::InvalidJson, detail, payload)
}

/// Why a body is not a record of `schemas/trade.avsc` (the detail of its dead letter).
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("truncated long")]
    TruncatedLong,
    #[error("a long longer than 10 bytes")]
    LongTooLong,
    #[error("negative length {0}")]
    NegativeLength(i64),
    #[error("length {0} beyond the end of the record")]
    LengthBeyondEnd(usize),
    #[error("a string is not UTF-8: {0}")]
    NotUtf8(#[source] std::str::Utf8Error),
    #[error("union index {0} for \"c\" (0 = null, 1 = array)")]
    ConditionsUnion(i64),
    #[error("{0} bytes after the record")]
    Trailing(usize),
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn long(&mut self) -> Result<i64, BodyError> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.bytes.split_first().ok_or(BodyError::TruncatedLong)?;
            self.bytes = rest;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(BodyError::LongTooLong)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BodyError> {
        let len = self.long()?;
        let len = usize::try_from(len).map_err(|_| BodyError::NegativeLength(len))?;
        if len > self.bytes.len() {
            return Err(BodyError::LengthBeyondEnd(len));
        }
        let (head, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(head)
    }

    fn string(&mut self) -> Result<&'a str, BodyError> {
        std::str::from_utf8(self.bytes()?).map_err(BodyError::NotUtf8)
    }
}

/// A decimal's unscaled big-endian two's-complement bytes as an integer.
fn unscaled(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() {
        return Some(0);
    }
    if bytes.len() > 16 {
        // Still representable only if it is sign extension.
        let (head, tail) = bytes.split_at(bytes.len() - 16);
        let sign = if tail[0] & 0x80 != 0 { 0xff } else { 0 };
        return head.iter().all(|b| *b == sign).then(|| unscaled(tail)).flatten();
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut buf = [fill; 16];
    buf[16 - bytes.len()..].copy_from_slice(bytes);
    Some(i128::from_be_bytes(buf))
}

/// Decodes a body written with `schemas/trade.avsc`.
fn decode_trade(body: &[u8]) -> Result<AvroRecord, BodyError> {
    let mut c = Cursor { bytes: body };
    let s = c.string()?;
    let p = c.bytes()?;
    let t = c.long()?;
    let v = c.bytes()?;
    let conditions = match c.long()? {
        0 => None,
        1 => {
            let mut list = Vec::new();
            loop {
                let mut count = c.long()?;
                if count == 0 {
                    break;
                }
                if count < 0 {
                    count = -count;
                    c.long()?;
                }
                for _ in 0..count {
                    list.push(c.string()?);
                }
            }
            Some(list)
        }
        other => return Err(BodyError::ConditionsUnion(other)),
    };
    if !c.bytes.is_empty() {
        return Err(BodyError::Trailing(c.bytes.len()));
    }
    let fields = Fields {
        s: Some(Field::Str(s.into())),
        p: Some(Field::Units(unscaled(p), 8)),
        v: Some(Field::Units(unscaled(v), 8)),
        t: Some(t),
        c: conditions.map(|list| Conditions::from_list(&list)),
    };
    Ok(fields.check())
}

/// A field's value, as far as the checks care.
enum Field {
    Str(String),
    /// An unscaled integer (`None`: beyond i128) and its scale.
    Units(Option<i128>, usize),
    /// A decimal read exactly from text (doubles are written in their shortest form).
    Text(String),
}

impl Field {
    fn render(&self) -> String {
        match self {
            Field::Str(s) | Field::Text(s) => serde_json::to_string(s).unwrap_or_default(),
            Field::Units(None, _) => "\"(a decimal beyond 128 bits)\"".into(),
            Field::Units(Some(u), scale) => decimal_text(*u, *scale),
        }
    }

    /// The value in 10^-8 units rounded half-even: `(negative, zero, units or None if huge)`.
    fn units(&self) -> Option<(bool, bool, Option<u64>)> {
        match self {
            Field::Str(_) => None,
            Field::Text(text) => parse_json_number(text.as_bytes()).map(|d| (d.negative, d.zero, d.units)),
            Field::Units(None, _) => Some((false, false, None)),
            Field::Units(Some(u), scale) => {
                let text = decimal_text(*u, *scale);
                parse_json_number(text.as_bytes()).map(|d| (d.negative, d.zero, d.units))
            }
        }
    }
}

fn decimal_text(unscaled: i128, scale: usize) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// The fields of one record, before the checks.
struct Fields {
    s: Option<Field>,
    p: Option<Field>,
    v: Option<Field>,
    t: Option<i64>,
    c: Option<Conditions>,
}

impl Fields {
    fn payload(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        let mut put = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                out.push_str(&format!("{}\"{name}\":{value}", if first { "" } else { "," }));
                first = false;
            }
        };
        put("s", self.s.as_ref().map(Field::render));
        put("p", self.p.as_ref().map(Field::render));
        put("t", self.t.map(|t| t.to_string()));
        put("v", self.v.as_ref().map(Field::render));
        put("c", Some(self.c.as_ref().and_then(|c| c.as_json().map(str::to_owned)).unwrap_or("null".into())));
        out.push('}');
        out
    }

    fn check(self) -> AvroRecord {
        let reject = |reason, detail: String| AvroRecord::Reject(reason, detail, self.payload());
        // 1. Presence and types.
        let symbol = match &self.s {
            Some(Field::Str(s)) => s,
            _ => return reject(RejectReason::MissingField, "field \"s\" is absent, null or not a string".into()),
        };
        let (Some(p), Some(v)) = (self.p.as_ref().and_then(Field::units), self.v.as_ref().and_then(Field::units))
        else {
            let name = if self.p.as_ref().and_then(Field::units).is_none() { "p" } else { "v" };
            return reject(RejectReason::MissingField, format!("field \"{name}\" is absent, null or not a number"));
        };
        let Some(ts) = self.t else {
            return reject(RejectReason::MissingField, "field \"t\" is absent, null or not an integer".into());
        };
        // 2. Values, in SPEC 2's order.
        let symbol = match Symbol::parse(symbol) {
            Ok(symbol) => symbol,
            Err(e) => return reject(RejectReason::BadSymbol, format!("field \"s\": {e}")),
        };
        let price = match p {
            (false, false, Some(units)) if units > 0 && units < UNITS_LIMIT as u64 => Price(units as i64),
            _ => {
                let shown = self.p.as_ref().map(Field::render).unwrap_or_default();
                let what = "is not > 0 (after rounding to 8 decimals) and below 10^10";
                return reject(RejectReason::BadPrice, format!("field \"p\": {shown} {what}"));
            }
        };
        let volume = match v {
            (false, _, Some(units)) if units < UNITS_LIMIT as u64 => Qty(units as i64),
            _ => {
                let shown = self.v.as_ref().map(Field::render).unwrap_or_default();
                return reject(RejectReason::BadVolume, format!("field \"v\": {shown} is negative or not below 10^10"));
            }
        };
        if !ts_in_range(ts) {
            let what = "is outside 2000-01-01..2100-01-01 (946684800000 <= t < 4102444800000 ms)";
            return reject(RejectReason::BadTimestamp, format!("field \"t\": {ts} {what}"));
        }
        let conditions = self.c.unwrap_or_else(Conditions::none);
        AvroRecord::Trade(Trade { symbol, ts, price, volume, conditions })
    }
}

/// Reads a record decoded with another writer schema by field name.
fn from_value(schema: &Schema, value: Value) -> AvroRecord {
    let Value::Record(fields) = value else {
        return AvroRecord::Reject(
            RejectReason::MissingField,
            "the Avro value is not a record".into(),
            format!("{value:?}"),
        );
    };
    let scale_of = |name: &str| -> usize {
        let Schema::Record(record) = schema else { return 0 };
        let field = record.fields.iter().find(|f| f.name == name);
        let mut schema = field.map(|f| &f.schema);
        if let Some(Schema::Union(union)) = schema {
            schema = union.variants().iter().find(|s| matches!(s, Schema::Decimal(_)));
        }
        match schema {
            Some(Schema::Decimal(d)) => d.scale,
            _ => 0,
        }
    };
    let mut out = Fields { s: None, p: None, v: None, t: None, c: None };
    for (name, value) in fields {
        let value = match value {
            Value::Union(_, inner) => *inner,
            other => other,
        };
        match name.as_str() {
            "s" => out.s = as_string(value).map(Field::Str),
            "p" | "v" => {
                let field = number(value, scale_of(&name));
                if name == "p" {
                    out.p = field;
                } else {
                    out.v = field;
                }
            }
            "t" => {
                out.t = match value {
                    Value::Long(t) | Value::TimestampMillis(t) | Value::LocalTimestampMillis(t) => Some(t),
                    Value::Int(t) => Some(i64::from(t)),
                    _ => None,
                }
            }
            "c" => {
                out.c = match value {
                    Value::Array(items) => {
                        let strings: Option<Vec<String>> = items.into_iter().map(as_string).collect();
                        strings.map(|list| Conditions::from_list(&list))
                    }
                    _ => None,
                }
            }
            _ => {}
        }
    }
    out.check()
}

fn as_string(value: Value) -> Option<String> {
    match value {
        Value::String(s) | Value::Enum(_, s) => Some(s),
        _ => None,
    }
}

fn number(value: Value, scale: usize) -> Option<Field> {
    Some(match value {
        Value::Decimal(d) => Field::Units(unscaled(&<Vec<u8>>::try_from(&d).ok()?), scale),
        Value::Long(n) => Field::Units(Some(i128::from(n)), 0),
        Value::Int(n) => Field::Units(Some(i128::from(n)), 0),
        // Shortest round-trip text: the decimal a JSON writer would have written.
        Value::Double(x) if x.is_finite() => Field::Text(format!("{x:?}").replace("e", "E")),
        Value::Float(x) if x.is_finite() => Field::Text(format!("{x:?}").replace("e", "E")),
        Value::String(s) => Field::Text(s),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::types::Record;

    fn trade(symbol: &str, price: i64, volume: i64, ts: i64, conditions: Option<&[&str]>) -> Trade {
        Trade {
            symbol: Symbol::parse(symbol).unwrap(),
            ts,
            price: Price(price),
            volume: Qty(volume),
            conditions: conditions.map_or_else(Conditions::none, Conditions::from_list),
        }
    }

    fn decoder() -> AvroDecoder {
        AvroDecoder::new(None)
    }

    #[test]
    fn round_trips_exact_values() {
        let trades = [
            trade("AAPL", 18_712_000_000, 10_000_000_000, 1_700_000_000_123, Some(&["1", "12"])),
            trade("BINANCE:BTCUSDT", 1, 0, 1_700_000_000_000, None),
            trade("IC MARKETS:1", 999_999_999_999_999_999, 1, 946_684_800_000, Some(&[])),
            trade("KRAKEN:XBT/USD", 128, 255, 4_102_444_799_999, Some(&["with \"quote\""])),
        ];
        for t in trades {
            let mut bytes = Vec::new();
            encode_trade(&mut bytes, 7, &t);
            assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
            let decoded = decoder().decode(&bytes).unwrap();
            let AvroRecord::Trade(back) = decoded else { panic!("{decoded:?}") };
            assert_eq!(back.conditions.decode(), t.conditions.decode());
            assert_eq!((back.symbol, back.ts, back.price, back.volume), (t.symbol.clone(), t.ts, t.price, t.volume));
            // apache-avro reads what the hand-written encoder wrote, with the same values.
            let value = apache_avro::from_avro_datum(trade_schema(), &mut &bytes[5..], None).unwrap();
            let AvroRecord::Trade(generic) = from_value(trade_schema(), value) else { panic!() };
            assert_eq!((generic.symbol, generic.price, generic.volume), (t.symbol, t.price, t.volume));
        }
    }

    #[test]
    fn reads_what_apache_avro_writes() {
        let mut record = Record::new(trade_schema()).unwrap();
        record.put("s", "MSFT");
        record.put("p", Value::Decimal(apache_avro::Decimal::from(37_012_345_678i64.to_be_bytes())));
        record.put("t", Value::TimestampMillis(1_700_000_000_000));
        record.put("v", Value::Decimal(apache_avro::Decimal::from(vec![0x01, 0x00])));
        record.put("c", Value::Union(0, Box::new(Value::Null)));
        let body = apache_avro::to_avro_datum(trade_schema(), record).unwrap();
        let mut bytes = vec![0, 0, 0, 0, 1];
        bytes.extend_from_slice(&body);
        let AvroRecord::Trade(t) = decoder().decode(&bytes).unwrap() else { panic!() };
        assert_eq!(
            (t.symbol.as_str(), t.price, t.volume, t.ts),
            ("MSFT", Price(37_012_345_678), Qty(256), 1_700_000_000_000)
        );
        assert!(t.conditions.is_none());
    }

    #[test]
    fn rejects_with_spec_reasons() {
        let encode = |t: &Trade| {
            let mut bytes = Vec::new();
            encode_trade(&mut bytes, 1, t);
            bytes
        };
        let reason = |bytes: &[u8]| match decoder().decode(bytes).unwrap() {
            AvroRecord::Reject(reason, detail, payload) => (reason, detail, payload),
            AvroRecord::Trade(t) => panic!("accepted {t:?}"),
        };
        let (r, d, p) = reason(&encode(&trade("AAPL", -5, 1, 1_700_000_000_000, None)));
        assert_eq!(r, RejectReason::BadPrice, "{d}");
        assert!(p.contains("\"p\":-0.00000005"), "{p}");
        assert_eq!(reason(&encode(&trade("AAPL", 5, -1, 1_700_000_000_000, None))).0, RejectReason::BadVolume);
        assert_eq!(reason(&encode(&trade("AAPL", 5, 1, 1, None))).0, RejectReason::BadTimestamp);
        // Garbage, a wrong magic byte and truncation are unreadable records.
        let good = encode(&trade("AAPL", 5, 1, 1_700_000_000_000, None));
        for bad in [&b"{\"s\":1}"[..], &good[..good.len() - 2], &[0, 0, 0][..], &[]] {
            let (r, d, p) = reason(bad);
            assert_eq!(r, RejectReason::InvalidJson, "{d}");
            assert!(d.contains("Avro"), "{d}");
            assert!(p.starts_with("avro:"), "{p}");
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(reason(&trailing).1.contains("after the record"));
    }

    #[test]
    fn other_writer_schemas_are_read_by_field_name() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"T","fields":[{"name":"s","type":"string"},{"name":"p","type":"double"},
                {"name":"v","type":{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}},{"name":"t","type":"long"}]}"#,
        )
        .unwrap();
        let mut record = Record::new(&schema).unwrap();
        record.put("s", "AAPL");
        record.put("p", Value::Double(187.12));
        record.put("v", Value::Decimal(apache_avro::Decimal::from(vec![0x30, 0x39])));
        record.put("t", Value::Long(1_700_000_000_000));
        let value =
            apache_avro::from_avro_datum(&schema, &mut &apache_avro::to_avro_datum(&schema, record).unwrap()[..], None)
                .unwrap();
        let AvroRecord::Trade(t) = from_value(&schema, value) else { panic!() };
        assert_eq!((t.price, t.volume), (Price(18_712_000_000), Qty(12_345_000_000)), "123.45 at scale 2");
    }

    #[test]
    fn decimal_text_is_exact() {
        assert_eq!(decimal_text(18_712_000_000, 8), "187.12000000");
        assert_eq!(decimal_text(-5, 8), "-0.00000005");
        assert_eq!(decimal_text(12345, 0), "12345");
        assert_eq!(unscaled(&[0xff]), Some(-1));
        assert_eq!(unscaled(&[0x00, 0x80]), Some(128));
        assert_eq!(unscaled(&[0xff; 20]), Some(-1));
        assert_eq!(unscaled(&[1; 20]), None);
    }
}

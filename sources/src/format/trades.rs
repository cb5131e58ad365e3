//! One NDJSON line turned into trade records (SPEC 2).
//!
//! A line holds exactly one JSON value:
//!
//! * an object with a `"type"` key is a Finnhub message: `"trade"` carries its trades in
//!   the `"data"` array (each element is checked on its own, so a valid trade next to
//!   invalid ones is kept), `"ping"` is a keep-alive, `"error"` a message from the server;
//! * any other object is a flat trade `{"s":…,"p":…,"t":…,"v":…,"c":…}`;
//! * anything else is a `missing_field` reject; a blank line yields nothing.
//!
//! A flat trade is checked in the order of SPEC 2, the first failure being the reason:
//! `s`, `p`, `v`, `t` absent, null or mistyped (`missing_field`; `t` must be a JSON integer),
//! then the values of `s` (`bad_symbol`), `p` (`bad_price`: > 0 before and after rounding
//! half-even to 8 places, below 10^10), `v` (`bad_volume`: not negative, below 10^10) and
//! `t` (`bad_timestamp`: years 2000..2100). A `c` that is not an array of strings counts
//! as absent and never rejects. Anything that is not strict JSON (see [`super::json`])
//! rejects the whole line as `invalid_json`.
//!
//! Parsing borrows from the line: an unescaped symbol, the conditions and every payload
//! are slices of it, so a typical line allocates nothing. Lateness is decided later, per
//! partition.

use super::json::{
    C, DATA, Element, Elements, Fields, JsonError, Kind, MAX_LEN, MSG, P, S, Scanner, Stop, T, TYPE, Tok, V,
};
use std::borrow::Cow;
use tradeflow_model::decimal::{Decimal8, parse_json_number};
use tradeflow_model::{Conditions, Price, Qty, RejectReason, Symbol, SymbolError, Trade, UNITS_LIMIT, ts_in_range};

/// One record read from a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A valid trade (not yet checked for lateness; that happens later).
    Trade(RawTrade<'a>),
    /// A rejected record.
    Reject(RawReject<'a>),
    /// `{"type":"ping"}` keep-alive.
    Ping,
    /// `{"type":"error","msg":"..."}` from the server, with the message decoded (empty
    /// when `msg` is absent or null; the raw JSON text when it is not a string).
    ServerError(Cow<'a, str>),
}

/// A valid trade, borrowing from the line it was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawTrade<'a> {
    /// The symbol, decoded (escapes resolved) and valid for [`Symbol::check`].
    pub symbol: Cow<'a, str>,
    /// The price, > 0 and below [`UNITS_LIMIT`] units.
    pub price: Price,
    /// The volume, >= 0 and below [`UNITS_LIMIT`] units.
    pub volume: Qty,
    /// Event time, ms since the Unix epoch, within [`ts_in_range`].
    pub ts: i64,
    /// The raw JSON text of `c` when it is an array of strings, else `None`.
    pub conditions: Option<&'a str>,
    /// Index of the element in a Finnhub message's `data` array; 0 for a flat trade.
    pub element: u32,
    /// The raw record: the element's JSON text for an element of a Finnhub message, the
    /// whole line for a flat trade (what a dead letter shows if the trade turns out late).
    pub raw: &'a [u8],
}

impl RawTrade<'_> {
    /// The trade, its symbol parsed (which the parser has already checked, so this fails
    /// only if the two checks ever disagree).
    pub fn to_trade(&self) -> Result<Trade, SymbolError> {
        Ok(self.trade_with(Symbol::parse(&self.symbol)?))
    }

    /// The trade with its `symbol` already parsed.
    pub fn trade_with(&self, symbol: Symbol) -> Trade {
        let conditions = self.conditions.map_or_else(Conditions::none, Conditions::from_json_unchecked);
        Trade { symbol, ts: self.ts, price: self.price, volume: self.volume, conditions }
    }
}

/// A rejected record, borrowing its payload from the line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawReject<'a> {
    /// Why it was rejected.
    pub reason: RejectReason,
    /// What was wrong, naming the field and the value (`field "p": -1.5 is not > 0`).
    pub detail: String,
    /// The raw record: the element's JSON text for an element of a Finnhub message, the
    /// whole line otherwise.
    pub payload: &'a [u8],
    /// Index of the element in a Finnhub message's `data` array; 0 otherwise.
    pub element: u32,
}

/// Parses one NDJSON line (without its `\n`; a trailing `\r` is whitespace) and calls
/// `emit` with each record it holds, in order. An empty or blank line emits nothing; a
/// line that is not exactly one valid JSON value emits one `invalid_json` reject. Never
/// panics, whatever the bytes. A UTF-8 byte-order mark before the line (the start of a
/// file saved by spreadsheet and Windows tools) is skipped; a reject of the whole line
/// still carries the line as it came, mark included.
pub fn parse_line<'a>(line: &'a [u8], emit: &mut impl FnMut(Item<'a>)) {
    let body = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    let text = match std::str::from_utf8(body) {
        Ok(text) if text.len() <= MAX_LEN => text,
        Ok(_) => {
            let what = "the line is longer than 4 GiB";
            emit(invalid(JsonError::Syntax { at: MAX_LEN, what }, line));
            return;
        }
        Err(e) => {
            let detail = format!("invalid JSON: invalid UTF-8 at byte {}", e.valid_up_to());
            emit(reject(RejectReason::InvalidJson, detail, line, 0));
            return;
        }
    };
    let mut scanner = Scanner::new(text, 0, 0);
    scanner.skip_ws();
    match scanner.peek() {
        None => {}
        Some(b'{') => {
            let mut fields: Fields = [None; 8];
            let mut elements = Elements::default();
            match scanner.fields(&mut fields, Some(&mut elements)) {
                Ok(()) if scanner.at_end() => match fields[TYPE] {
                    None => emit(trade(text, &fields, line, 0)),
                    Some(kind) => message(text, &fields, &elements, kind, line, emit),
                },
                Ok(()) => emit(trailing(scanner.pos(), line)),
                Err(Stop) => emit(invalid(scanner.error(), line)),
            }
        }
        Some(_) => match scanner.value() {
            Ok(tok) if scanner.at_end() => {
                let detail = format!("the line is {}, not an object", snippet(tok.raw(text)));
                emit(reject(RejectReason::MissingField, detail, line, 0));
            }
            Ok(_) => emit(trailing(scanner.pos(), line)),
            Err(Stop) => emit(invalid(scanner.error(), line)),
        },
    }
}

/// Handles a Finnhub message (a top-level object with a `type` key) of a valid line.
#[inline(never)]
fn message<'a>(
    text: &'a str,
    fields: &Fields,
    elements: &Elements,
    kind: Tok,
    line: &'a [u8],
    emit: &mut impl FnMut(Item<'a>),
) {
    match kind.string(text).as_deref() {
        Some("trade") => match fields[DATA] {
            Some(data) if data.kind.is_array() => {
                let mut index: u32 = 0;
                let mut each = |element: &Element| {
                    emit(data_element(text, element, index));
                    index = index.saturating_add(1);
                };
                if !elements.overflow {
                    elements.list.iter().for_each(&mut each);
                } else if let Err(Stop) = Scanner::new(text, data.start(), 1).elements(&mut each) {
                    // Cannot happen: the whole line was scanned already.
                    let what = "the data array could not be scanned again";
                    emit(invalid(JsonError::Syntax { at: data.start(), what }, line));
                }
            }
            data => {
                let detail = mistyped(text, "data", data, "is not an array");
                emit(reject(RejectReason::MissingField, detail, line, 0));
            }
        },
        Some("ping") => emit(Item::Ping),
        Some("error") => emit(Item::ServerError(match fields[MSG] {
            None => Cow::Borrowed(""),
            Some(msg) if msg.kind == Kind::Null => Cow::Borrowed(""),
            Some(msg) => msg.string(text).unwrap_or(Cow::Borrowed(msg.raw(text))),
        })),
        Some(other) => {
            let detail =
                format!("field \"type\": unknown message type \"{}\" (expected trade, ping or error)", snippet(other));
            emit(reject(RejectReason::MissingField, detail, line, 0));
        }
        None => {
            let detail = mistyped(text, "type", Some(kind), "is not a string");
            emit(reject(RejectReason::MissingField, detail, line, 0));
        }
    }
}

/// Checks one element of a Finnhub message's `data` array.
#[inline(always)]
fn data_element<'a>(text: &'a str, element: &Element, index: u32) -> Item<'a> {
    let payload = element.tok.raw(text).as_bytes();
    if element.tok.kind == Kind::Object {
        trade(text, &element.fields, payload, index)
    } else {
        let detail = format!("element {index} of \"data\" is {}, not an object", snippet(element.tok.raw(text)));
        reject(RejectReason::MissingField, detail, payload, index)
    }
}

/// Checks one flat trade object, in SPEC 2's order.
#[inline(always)]
fn trade<'a>(text: &'a str, fields: &Fields, payload: &'a [u8], element: u32) -> Item<'a> {
    match check(text, fields) {
        Ok((symbol, price, volume, ts)) => Item::Trade(RawTrade {
            symbol,
            price,
            volume,
            ts,
            conditions: match fields[C] {
                Some(c) if c.kind == Kind::StringArray => Some(c.raw(text)),
                _ => None,
            },
            element,
            raw: payload,
        }),
        Err((reason, detail)) => reject(reason, detail, payload, element),
    }
}

type Checked<'a> = Result<(Cow<'a, str>, Price, Qty, i64), (RejectReason, String)>;

#[inline(always)]
fn check<'a>(text: &'a str, fields: &Fields) -> Checked<'a> {
    // 1. Presence and JSON types.
    let (Some(s), Some(p), Some(v), Some(t)) = (
        fields[S].filter(|s| s.kind.is_string()),
        fields[P].filter(|p| p.kind.is_number()),
        fields[V].filter(|v| v.kind.is_number()),
        fields[T].filter(|t| t.kind == Kind::Integer),
    ) else {
        return Err(missing_field(text, fields));
    };
    // 2. The symbol.
    let symbol = s.string(text).unwrap_or(Cow::Borrowed(""));
    if let Err(e) = Symbol::check(&symbol) {
        return Err(bad_symbol(text, s, e));
    }
    // 3. The price: > 0 before and after rounding, below 10^10.
    let price = decimal(p.raw(text).as_bytes());
    let price = match price.units {
        Some(units) if !price.negative && units > 0 && units < UNITS_LIMIT as u64 => Price(units as i64),
        _ => return Err(bad_price(text, p, price)),
    };
    // 4. The volume: not negative, below 10^10.
    let volume = decimal(v.raw(text).as_bytes());
    let volume = match volume.units {
        Some(units) if !volume.negative && units < UNITS_LIMIT as u64 => Qty(units as i64),
        _ => return Err(bad_volume(text, v, volume)),
    };
    // 5. The timestamp.
    let ts = match integer(t.raw(text).as_bytes()) {
        Some(ts) if ts_in_range(ts) => ts,
        _ => {
            let what = "is outside 2000-01-01..2100-01-01 (946684800000 <= t < 4102444800000 ms)";
            return Err(bad(RejectReason::BadTimestamp, value_error(text, "t", t, what)));
        }
    };
    Ok((symbol, price, volume, ts))
}

#[cold]
#[inline(never)]
fn missing_field(text: &str, fields: &Fields) -> (RejectReason, String) {
    let expected = [
        (S, "s", "is not a string"),
        (P, "p", "is not a number"),
        (V, "v", "is not a number"),
        (T, "t", "is not a JSON integer"),
    ];
    for (index, name, wrong_type) in expected {
        let ok = match fields[index].map(|tok| tok.kind) {
            Some(Kind::Str | Kind::EscapedStr) => index == S,
            Some(Kind::Number) => index == P || index == V,
            Some(Kind::Integer) => index == P || index == V || index == T,
            _ => false,
        };
        if !ok {
            let detail = mistyped(text, name, fields[index], wrong_type);
            return (RejectReason::MissingField, detail);
        }
    }
    let detail = "fields \"s\", \"p\", \"v\", \"t\" are required".to_owned();
    (RejectReason::MissingField, detail)
}

#[cold]
#[inline(never)]
fn bad_symbol(text: &str, s: Tok, e: tradeflow_model::SymbolError) -> (RejectReason, String) {
    let raw = snippet(s.raw(text));
    let detail = format!("field \"s\": {raw} is not a valid symbol: {e}");
    (RejectReason::BadSymbol, detail)
}

#[cold]
#[inline(never)]
fn bad_price(text: &str, p: Tok, price: Decimal8) -> (RejectReason, String) {
    let what = if price.negative || price.zero {
        "is not > 0"
    } else if price.units == Some(0) {
        "is not > 0 once rounded to 8 decimal places"
    } else {
        "is not below 10^10"
    };
    (RejectReason::BadPrice, value_error(text, "p", p, what))
}

#[cold]
#[inline(never)]
fn bad_volume(text: &str, v: Tok, volume: Decimal8) -> (RejectReason, String) {
    let what = if volume.negative { "is negative" } else { "is not below 10^10" };
    (RejectReason::BadVolume, value_error(text, "v", v, what))
}

/// Reads a validated JSON number exactly, rounded half-even to 8 places. Plain decimals
/// with at most 11 integer and 8 fractional digits (nearly every price and volume) are
/// read here without allocating; the rest go through [`parse_json_number`].
#[inline]
pub(crate) fn decimal(text: &[u8]) -> Decimal8 {
    const POW10: [u64; 9] = [100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1];
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut i = 0;
    let mut whole: u64 = 0;
    while let Some(d @ b'0'..=b'9') = digits.get(i) {
        whole = whole.wrapping_mul(10).wrapping_add((d - b'0') as u64);
        i += 1;
    }
    let int_len = i;
    let mut frac: u64 = 0;
    let mut frac_len = 0;
    let point = digits.get(i) == Some(&b'.');
    if point {
        i += 1;
        while let Some(d @ b'0'..=b'9') = digits.get(i) {
            frac = frac.wrapping_mul(10).wrapping_add((d - b'0') as u64);
            frac_len += 1;
            i += 1;
        }
    }
    let plain = i == digits.len() && (1..=11).contains(&int_len) && frac_len <= 8;
    if !plain || (point && frac_len == 0) {
        return parse_json_number(text).unwrap_or(Decimal8 { negative, zero: false, units: None });
    }
    let units = whole * 100_000_000 + frac * POW10.get(frac_len).copied().unwrap_or(1);
    Decimal8 { negative: negative && units != 0, zero: units == 0, units: Some(units) }
}

/// Reads a validated JSON integer of at most 18 digits (so that it fits an `i64`);
/// `None` for a longer one (at least 10^18, far outside any valid timestamp).
#[inline(always)]
fn integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.len() > 18 {
        return None;
    }
    // The leading digits one by one, then blocks of 8 at once: the two chains overlap.
    let (head, mut blocks) = digits.split_at(digits.len() % 8);
    let mut value: u64 = 0;
    for d in head {
        value = value * 10 + d.wrapping_sub(b'0') as u64;
    }
    while let Some((block, rest)) = blocks.split_first_chunk::<8>() {
        value = value * 100_000_000 + eight_digits(*block);
        blocks = rest;
    }
    let value = value as i64;
    Some(if negative { -value } else { value })
}

/// The value of 8 ASCII digits, computed in one register (SWAR).
#[inline(always)]
fn eight_digits(block: [u8; 8]) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = u64::from_le_bytes(block).wrapping_sub(0x3030_3030_3030_3030);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    ((v & MASK).wrapping_mul(MUL1).wrapping_add(((v >> 16) & MASK).wrapping_mul(MUL2))) >> 32
}

fn reject<'a>(reason: RejectReason, detail: String, payload: &'a [u8], element: u32) -> Item<'a> {
    Item::Reject(RawReject { reason, detail, payload, element })
}

#[cold]
#[inline(never)]
fn invalid(e: JsonError, line: &[u8]) -> Item<'_> {
    let detail = match e {
        JsonError::Syntax { at, what } => format!("invalid JSON at byte {at}: {what}"),
        JsonError::DuplicateKey { at, key } => {
            format!("invalid JSON: duplicate key \"{}\" at byte {at}", snippet(&key))
        }
    };
    reject(RejectReason::InvalidJson, detail, line, 0)
}

#[cold]
fn trailing(at: usize, line: &[u8]) -> Item<'_> {
    let what = "unexpected text after the JSON value";
    invalid(JsonError::Syntax { at, what }, line)
}

#[cold]
fn bad(reason: RejectReason, detail: String) -> (RejectReason, String) {
    (reason, detail)
}

#[cold]
fn mistyped(text: &str, field: &str, tok: Option<Tok>, wrong_type: &str) -> String {
    match tok {
        None => format!("field \"{field}\" is missing"),
        Some(Tok { kind: Kind::Null, .. }) => format!("field \"{field}\" is null"),
        Some(tok) => format!("field \"{field}\": {} {wrong_type}", snippet(tok.raw(text))),
    }
}

#[cold]
fn value_error(text: &str, field: &str, tok: Tok, what: &str) -> String {
    format!("field \"{field}\": {} {what}", snippet(tok.raw(text)))
}

/// `text` cut to 40 characters, with `…` when cut.
fn snippet(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(40) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => Cow::Owned(format!("{}…", text.get(..cut).unwrap_or(""))),
    }
}

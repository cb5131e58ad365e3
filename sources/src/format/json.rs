//! A strict RFC 8259 JSON scanner over one line of text, zero-copy.
//!
//! The scanner validates as it goes and hands back where each value's raw text is
//! ([`Tok`]) instead of building a tree: a string's text stays borrowed unless it holds
//! escapes, a number's text is kept for an exact decimal reading. What it rejects:
//!
//! * anything outside RFC 8259's grammar: `NaN`, `Infinity`, leading zeros, `+1`, `1.`,
//!   trailing commas, comments, single quotes, unescaped control characters (U+0000 to
//!   U+001F) in strings, unknown escapes, a second value after the first;
//! * a `\u` escape that yields a lone surrogate (a high one not followed by a low one, or
//!   a low one on its own);
//! * a duplicate key in any object, comparing keys after decoding escapes
//!   (`{"p":1,"\u0070":2}`);
//! * nesting deeper than [`MAX_DEPTH`] arrays and objects (never a stack overflow: the
//!   recursion stops there).
//!
//! UTF-8 is checked once for the whole line by the caller (`std::str::from_utf8`), so the
//! scanner works on a `&str` and every slice it returns is a `&str` too.

use std::borrow::Cow;
use std::collections::HashSet;

/// Deepest nesting of arrays and objects accepted; one more is an error.
pub(crate) const MAX_DEPTH: u32 = 128;

/// Longest line the scanner takes, in bytes (token offsets are `u32`).
pub(crate) const MAX_LEN: usize = u32::MAX as usize;

/// The JSON type of a scanned value, with what the trade parser needs to know about it.
/// A plain one-byte enum: tokens are built in registers on the hot path.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool,
    /// A string without escapes (its raw text is its value).
    Str,
    /// A string with at least one `\` escape.
    EscapedStr,
    /// A number without fraction and exponent.
    Integer,
    /// A number with a fraction or an exponent.
    Number,
    /// An array whose elements are all strings (vacuously for `[]`).
    StringArray,
    /// Any other array.
    Array,
    /// An object.
    Object,
}

impl Kind {
    /// True for a string.
    pub fn is_string(self) -> bool {
        matches!(self, Kind::Str | Kind::EscapedStr)
    }

    /// True for a number.
    pub fn is_number(self) -> bool {
        matches!(self, Kind::Integer | Kind::Number)
    }

    /// True for an array.
    pub fn is_array(self) -> bool {
        matches!(self, Kind::StringArray | Kind::Array)
    }
}

/// One scanned JSON value: its kind and where its raw text is in the line. Small enough
/// to travel in registers (offsets, not a slice), which matters on the hot path.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Tok {
    /// What the value is.
    pub kind: Kind,
    start: u32,
    end: u32,
}

impl Tok {
    /// The value's JSON text in `text` (the line it was scanned from), quotes and
    /// brackets included.
    #[inline]
    pub fn raw<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.start as usize..self.end as usize).unwrap_or("")
    }

    /// Byte offset of the value in the line.
    pub fn start(&self) -> usize {
        self.start as usize
    }

    /// The decoded text of a string token of `text` (escapes resolved), borrowed when it
    /// has none. `None` when the token is not a string.
    #[inline]
    pub fn string<'a>(&self, text: &'a str) -> Option<Cow<'a, str>> {
        match self.kind {
            Kind::Str | Kind::EscapedStr => {
                let escaped = self.kind == Kind::EscapedStr;
                let inner = text.get(self.start as usize + 1..(self.end as usize).saturating_sub(1))?;
                Some(if escaped { Cow::Owned(unescape(inner)) } else { Cow::Borrowed(inner) })
            }
            _ => None,
        }
    }
}

/// Why a line is not valid JSON, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// A grammar violation at a byte offset.
    Syntax {
        /// Byte offset of the offending input.
        at: usize,
        /// What was expected or what is wrong.
        what: &'static str,
    },
    /// An object repeats a key (compared after decoding escapes).
    DuplicateKey {
        /// Byte offset of the repeated key's opening quote.
        at: usize,
        /// The repeated key, decoded.
        key: String,
    },
}

/// Scanning stopped at an error, kept in the [`Scanner`] (so that results stay small).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stop;

/// The keys of a trade object that the trade parser reads; every other key is only
/// checked for duplicates.
pub(crate) const FIELD_NAMES: [&str; 8] = ["s", "p", "v", "t", "c", "type", "data", "msg"];
/// Index of `s` in [`Fields`].
pub(crate) const S: usize = 0;
/// Index of `p` in [`Fields`].
pub(crate) const P: usize = 1;
/// Index of `v` in [`Fields`].
pub(crate) const V: usize = 2;
/// Index of `t` in [`Fields`].
pub(crate) const T: usize = 3;
/// Index of `c` in [`Fields`].
pub(crate) const C: usize = 4;
/// Index of `type` in [`Fields`].
pub(crate) const TYPE: usize = 5;
/// Index of `data` in [`Fields`].
pub(crate) const DATA: usize = 6;
/// Index of `msg` in [`Fields`].
pub(crate) const MSG: usize = 7;

/// The values of the keys in [`FIELD_NAMES`] found in one object, by index.
pub(crate) type Fields = [Option<Tok>; 8];

/// The index in [`Fields`] of the one-letter key `letter`, if it is one of a trade's.
#[inline(always)]
fn trade_key_index(letter: u8) -> Option<usize> {
    match letter {
        b's' => Some(S),
        b'p' => Some(P),
        b'v' => Some(V),
        b't' => Some(T),
        b'c' => Some(C),
        _ => None,
    }
}

/// The index in [`Fields`] of `key`, if it is one of [`FIELD_NAMES`].
#[inline]
fn field_index(key: &[u8]) -> Option<usize> {
    match key {
        b"s" => Some(S),
        b"p" => Some(P),
        b"v" => Some(V),
        b"t" => Some(T),
        b"c" => Some(C),
        b"type" => Some(TYPE),
        b"data" => Some(DATA),
        b"msg" => Some(MSG),
        _ => None,
    }
}

/// An element of a Finnhub message's `data` array.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Element {
    /// The element's kind and text.
    pub tok: Tok,
    /// The fields of an object element; all `None` for another element.
    pub fields: Fields,
}

/// Most elements of a `data` array kept while scanning a line. An [`Element`] takes
/// about 100 bytes and `1,` two, so a huge array is not kept (memory would grow far
/// beyond the line's size) but scanned a second time instead.
pub(crate) const MAX_KEPT_ELEMENTS: usize = 1024;

/// The elements of a `data` array, read along with the rest of the line.
#[derive(Debug, Default)]
pub(crate) struct Elements {
    /// The elements, in order (only the first [`MAX_KEPT_ELEMENTS`] when `overflow`).
    pub list: Vec<Element>,
    /// The array had more than [`MAX_KEPT_ELEMENTS`]: scan it again.
    pub overflow: bool,
}

/// The keys seen so far in one object: a linear scan over a few inline keys (objects
/// here are tiny), a hash set once there are many or one of them had escapes.
struct KeySet<'a> {
    inline: [&'a str; 8],
    len: usize,
    spill: Option<HashSet<Cow<'a, str>>>,
}

impl<'a> KeySet<'a> {
    fn new() -> Self {
        KeySet { inline: [""; 8], len: 0, spill: None }
    }

    /// Adds `key`; gives it back when it was already there.
    fn insert(&mut self, key: Cow<'a, str>) -> Result<(), Cow<'a, str>> {
        if let Some(set) = &mut self.spill {
            if set.contains(&key) {
                return Err(key);
            }
            set.insert(key);
            return Ok(());
        }
        let seen = self.inline.get(..self.len).unwrap_or(&[]);
        if seen.iter().any(|k| *k == key.as_ref()) {
            return Err(key);
        }
        match key {
            Cow::Borrowed(k) if self.len < self.inline.len() => {
                if let Some(slot) = self.inline.get_mut(self.len) {
                    *slot = k;
                }
                self.len += 1;
            }
            key => {
                let mut set: HashSet<Cow<'a, str>> = seen.iter().map(|k| Cow::Borrowed(*k)).collect();
                set.insert(key);
                self.spill = Some(set);
            }
        }
        Ok(())
    }
}

/// The offset of the first byte from `i` on that is `"`, `\` or a control character
/// (or the end). (Strings here are short: a byte loop beats 8-bytes-at-a-time tricks.)
#[inline(always)]
fn skip_plain_string(bytes: &[u8], mut i: usize) -> usize {
    while let Some(&c) = bytes.get(i) {
        if STRING_STOP[c as usize] {
            break;
        }
        i += 1;
    }
    i
}

/// The offset of the first byte from `i` on that is not an ASCII digit (or the end).
#[inline(always)]
fn skip_digits(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b'0'..=b'9') = bytes.get(i) {
        i += 1;
    }
    i
}

/// Bytes that end a run of plain string text: `"`, `\` and the control characters.
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// A cursor over one line of JSON text. On an error, scanning methods return [`Stop`]
/// and leave the error in the scanner ([`Scanner::error`]).
pub(crate) struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
    error: Option<JsonError>,
}

impl<'a> Scanner<'a> {
    /// A scanner at byte `pos` of `text`, inside `depth` open arrays and objects.
    /// `text` must not be longer than [`MAX_LEN`] (token offsets are `u32`).
    pub fn new(text: &'a str, pos: usize, depth: u32) -> Self {
        Scanner { text, bytes: text.as_bytes(), pos, depth, error: None }
    }

    /// The error that stopped scanning.
    pub fn error(&mut self) -> JsonError {
        self.error.take().unwrap_or(JsonError::Syntax { at: self.pos, what: "scanning stopped" })
    }

    /// The current byte offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    /// The byte at the cursor, if any.
    #[inline(always)]
    pub fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// True when only whitespace is left; moves past it.
    pub fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos >= self.bytes.len()
    }

    /// Moves past JSON whitespace (space, tab, LF, CR).
    #[inline(always)]
    pub fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn fail(&mut self, at: usize, what: &'static str) -> Stop {
        self.error = Some(JsonError::Syntax { at, what });
        Stop
    }

    #[cold]
    #[inline(never)]
    fn duplicate(&mut self, at: usize, key: &str) -> Stop {
        self.error = Some(JsonError::DuplicateKey { at, key: key.to_owned() });
        Stop
    }

    #[inline(always)]
    fn tok(&self, kind: Kind, start: usize) -> Tok {
        Tok { kind, start: start as u32, end: self.pos as u32 }
    }

    fn enter(&mut self) -> Result<(), Stop> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let what = "arrays and objects are nested more than 128 deep";
            return Err(self.fail(self.pos, what));
        }
        Ok(())
    }

    /// Scans one value at the cursor (whitespace already skipped).
    #[inline(always)]
    pub fn value(&mut self) -> Result<Tok, Stop> {
        let start = self.pos;
        let kind = self.value_kind()?;
        Ok(self.tok(kind, start))
    }

    /// Scans one value at the cursor and returns its kind. Strings and numbers are
    /// scanned inline, everything else out of line. (Returning only the one-byte kind
    /// keeps the result in a register: a `Tok` returned through memory costs a
    /// store-forwarding stall per value.)
    #[inline(always)]
    fn value_kind(&mut self) -> Result<Kind, Stop> {
        match self.peek() {
            Some(b'"') => Ok(if self.string()? { Kind::EscapedStr } else { Kind::Str }),
            Some(b'-' | b'0'..=b'9') => Ok(if self.number()? { Kind::Integer } else { Kind::Number }),
            _ => self.other_kind(),
        }
    }

    /// Scans a value that is not a string or a number.
    #[inline(never)]
    fn other_kind(&mut self) -> Result<Kind, Stop> {
        let start = self.pos;
        Ok(match self.peek() {
            Some(b'{') => {
                self.object()?;
                Kind::Object
            }
            Some(b'[') => {
                if self.array()? {
                    Kind::StringArray
                } else {
                    Kind::Array
                }
            }
            Some(b't') => self.literal(b"true", Kind::Bool)?,
            Some(b'f') => self.literal(b"false", Kind::Bool)?,
            Some(b'n') => self.literal(b"null", Kind::Null)?,
            Some(b'N' | b'I') => {
                return Err(self.fail(start, "NaN and Infinity are not JSON numbers"));
            }
            Some(b'+' | b'.') => {
                return Err(self.fail(start, "a JSON number starts with '-' or a digit"));
            }
            Some(b'\'') => return Err(self.fail(start, "JSON strings use double quotes")),
            Some(b']' | b'}' | b',') => {
                return Err(self.fail(start, "expected a value (a trailing comma?)"));
            }
            Some(_) => return Err(self.fail(start, "expected a value")),
            None => return Err(self.fail(start, "unexpected end of input, expected a value")),
        })
    }

    fn literal(&mut self, word: &'static [u8], kind: Kind) -> Result<Kind, Stop> {
        if self.bytes.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(self.fail(self.pos, "expected true, false or null"))
        }
    }

    /// Scans a number; returns true when it is an integer (no fraction, no exponent).
    #[inline(always)]
    fn number(&mut self) -> Result<bool, Stop> {
        let b = self.bytes;
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if let Some(b'0'..=b'9') = b.get(i) {
                    return Err(self.fail(i, "a JSON number has no leading zeros"));
                }
            }
            Some(b'1'..=b'9') => i = skip_digits(b, i + 1),
            _ => return Err(self.fail(i, "expected a digit")),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            let digits = i;
            i = skip_digits(b, i);
            if i == digits {
                return Err(self.fail(i, "expected a digit after the decimal point"));
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            integer = false;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let digits = i;
            while let Some(b'0'..=b'9') = b.get(i) {
                i += 1;
            }
            if i == digits {
                return Err(self.fail(i, "expected a digit in the exponent"));
            }
        }
        self.pos = i;
        Ok(integer)
    }

    /// Scans a string at the cursor (on its opening quote); returns true when it holds
    /// escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, Stop> {
        let b = self.bytes;
        let mut i = self.pos + 1;
        let mut escaped = false;
        loop {
            i = skip_plain_string(b, i);
            match b.get(i) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape(i)?;
                }
                Some(_) => {
                    let what = "a control character in a string must be escaped";
                    return Err(self.fail(i, what));
                }
                None => return Err(self.fail(i, "unterminated string")),
            }
        }
        self.pos = i + 1;
        Ok(escaped)
    }

    /// Checks the escape at `i` (a backslash); returns the offset after it.
    #[inline(never)]
    fn escape(&mut self, i: usize) -> Result<usize, Stop> {
        match self.bytes.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => match hex4(self.bytes, i + 2) {
                None => Err(self.fail(i, "expected 4 hex digits after \\u")),
                Some(0xD800..=0xDBFF) => {
                    let low = match self.bytes.get(i + 6..i + 8) {
                        Some(b"\\u") => hex4(self.bytes, i + 8),
                        _ => None,
                    };
                    match low {
                        Some(0xDC00..=0xDFFF) => Ok(i + 12),
                        _ => {
                            let what = "a high surrogate escape is not followed by a low one";
                            Err(self.fail(i, what))
                        }
                    }
                }
                Some(0xDC00..=0xDFFF) => Err(self.fail(i, "a low surrogate escape has no high one before it")),
                Some(_) => Ok(i + 6),
            },
            _ => Err(self.fail(i, "unknown escape in a string")),
        }
    }

    /// Scans an array at the cursor; returns true when all its elements are strings.
    fn array(&mut self) -> Result<bool, Stop> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        let mut all_strings = true;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(true);
        }
        loop {
            all_strings &= self.value_kind()?.is_string();
            if !self.after_element()? {
                return Ok(all_strings);
            }
        }
    }

    /// After an array element: moves past ',' (true, another element follows) or ']'
    /// (false).
    #[inline(always)]
    fn after_element(&mut self) -> Result<bool, Stop> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(true)
            }
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            _ => Err(self.fail(self.pos, "expected ',' or ']' after an array element")),
        }
    }

    /// Scans a key and its ':' at the cursor (on the key's opening quote); returns the
    /// key's raw text (without quotes) and whether it holds escapes.
    #[inline(always)]
    fn key(&mut self) -> Result<(&'a str, bool), Stop> {
        if self.peek() != Some(b'"') {
            return Err(self.fail(self.pos, "expected a string key in an object"));
        }
        let start = self.pos + 1;
        let escaped = self.string()?;
        let key = self.text.get(start..self.pos - 1).unwrap_or("");
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.fail(self.pos, "expected ':' after an object key"));
        }
        self.pos += 1;
        self.skip_ws();
        Ok((key, escaped))
    }

    /// After an object member: moves past ',' (true, another member follows) or '}'
    /// (false).
    #[inline(always)]
    fn after_member(&mut self) -> Result<bool, Stop> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                self.skip_ws();
                Ok(true)
            }
            Some(b'}') => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            _ => Err(self.fail(self.pos, "expected ',' or '}' after an object member")),
        }
    }

    /// Scans an object whose values are not needed, checking its keys for duplicates.
    fn object(&mut self) -> Result<(), Stop> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut keys = KeySet::new();
        loop {
            let at = self.pos;
            let (key, escaped) = self.key()?;
            let key = if escaped { Cow::Owned(unescape(key)) } else { Cow::Borrowed(key) };
            if let Err(key) = keys.insert(key) {
                return Err(self.duplicate(at, &key));
            }
            self.value_kind()?;
            if !self.after_member()? {
                return Ok(());
            }
        }
    }

    /// Scans an object at the cursor into `fields` (all `None`), keeping the values of
    /// the keys in [`FIELD_NAMES`] and checking every key for duplicates. With `data`,
    /// the elements of a `data` array are read too and pushed onto it (so a Finnhub
    /// message is scanned once).
    pub fn fields(&mut self, fields: &mut Fields, mut data: Option<&mut Elements>) -> Result<(), Stop> {
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut others = None; // a KeySet, made at the first key that is not a field
        loop {
            let at = self.pos;
            // Fast path for the one-letter keys of a trade: `"p":` with nothing between.
            let letter = match self.bytes.get(at..at + 4) {
                Some(&[b'"', letter, b'"', b':']) => trade_key_index(letter),
                _ => None,
            };
            let index = match letter {
                Some(index) => {
                    self.pos = at + 4;
                    self.skip_ws();
                    index
                }
                None => {
                    let (key, escaped) = self.key()?;
                    // The raw text of an escaped key holds a `\`: it never names a field.
                    match field_index(key.as_bytes()) {
                        Some(index) => index,
                        None => self.other_key(&mut others, key, escaped, at)?,
                    }
                }
            };
            let tok = match data.as_deref_mut() {
                Some(elements) if index == DATA && self.peek() == Some(b'[') => {
                    elements.list.clear();
                    self.elements(|element| {
                        if elements.list.len() < MAX_KEPT_ELEMENTS {
                            if elements.list.capacity() == 0 {
                                elements.list.reserve(16);
                            }
                            elements.list.push(*element);
                        } else {
                            elements.overflow = true;
                        }
                    })?
                }
                _ => self.value()?,
            };
            if let Some(slot) = fields.get_mut(index) {
                if slot.is_some() {
                    let key = FIELD_NAMES.get(index).copied().unwrap_or("?");
                    return Err(self.duplicate(at, key));
                }
                *slot = Some(tok);
            }
            if !self.after_member()? {
                return Ok(());
            }
        }
    }

    /// For a key of [`Scanner::fields`] that is escaped or not one of [`FIELD_NAMES`]:
    /// its index in [`Fields`] once decoded, or else `FIELD_NAMES.len()`, after adding it
    /// to `others` (an error when it is there already).
    #[inline(never)]
    fn other_key(
        &mut self,
        others: &mut Option<KeySet<'a>>,
        key: &'a str,
        escaped: bool,
        at: usize,
    ) -> Result<usize, Stop> {
        let key = if escaped { Cow::Owned(unescape(key)) } else { Cow::Borrowed(key) };
        if let Some(index) = field_index(key.as_bytes()) {
            return Ok(index);
        }
        match others.get_or_insert_with(KeySet::new).insert(key) {
            Ok(()) => Ok(FIELD_NAMES.len()),
            Err(key) => Err(self.duplicate(at, &key)),
        }
    }

    /// Scans the array at the cursor, calling `each` with each element and, for an
    /// object, its fields (as [`Scanner::fields`] reads them).
    pub fn elements(&mut self, mut each: impl FnMut(&Element)) -> Result<Tok, Stop> {
        let start = self.pos;
        self.enter()?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(self.tok(Kind::StringArray, start));
        }
        let mut all_strings = true;
        loop {
            let mut element = Element { tok: self.tok(Kind::Null, self.pos), fields: [None; 8] };
            if self.peek() == Some(b'{') {
                let object = self.pos;
                self.fields(&mut element.fields, None)?;
                element.tok = self.tok(Kind::Object, object);
            } else {
                element.tok = self.value()?;
            }
            all_strings &= element.tok.kind.is_string();
            each(&element);
            if !self.after_element()? {
                let kind = if all_strings { Kind::StringArray } else { Kind::Array };
                return Ok(self.tok(kind, start));
            }
        }
    }
}

/// The value of 4 hex digits at `i`.
fn hex4(bytes: &[u8], i: usize) -> Option<u16> {
    let digits = bytes.get(i..i + 4)?;
    let mut value: u16 = 0;
    for d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        value = value << 4 | v as u16;
    }
    Some(value)
}

/// Decodes the escapes of a string's raw text, which the scanner has validated.
/// Never panics: anything unexpected decodes to U+FFFD.
pub(crate) fn unescape(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut run = 0; // start of the current run of plain text
    let mut i = 0;
    while i < bytes.len() {
        if bytes.get(i) != Some(&b'\\') {
            i += 1;
            continue;
        }
        out.push_str(raw.get(run..i).unwrap_or(""));
        let (ch, len) = match bytes.get(i + 1) {
            Some(b'"') => ('"', 2),
            Some(b'\\') => ('\\', 2),
            Some(b'/') => ('/', 2),
            Some(b'b') => ('\u{8}', 2),
            Some(b'f') => ('\u{c}', 2),
            Some(b'n') => ('\n', 2),
            Some(b'r') => ('\r', 2),
            Some(b't') => ('\t', 2),
            Some(b'u') => match hex4(bytes, i + 2) {
                Some(high @ 0xD800..=0xDBFF) => match hex4(bytes, i + 8) {
                    Some(low @ 0xDC00..=0xDFFF) => {
                        let c = 0x10000 + ((high as u32 - 0xD800) << 10) + (low as u32 - 0xDC00);
                        (char::from_u32(c).unwrap_or('\u{FFFD}'), 12)
                    }
                    _ => ('\u{FFFD}', 6),
                },
                Some(unit) => (char::from_u32(unit as u32).unwrap_or('\u{FFFD}'), 6),
                None => ('\u{FFFD}', 2),
            },
            _ => ('\u{FFFD}', 1),
        };
        out.push(ch);
        i += len;
        run = i;
    }
    out.push_str(raw.get(run..).unwrap_or(""));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Result<Tok, JsonError> {
        let mut s = Scanner::new(text, 0, 0);
        s.skip_ws();
        match s.value() {
            Ok(tok) if s.at_end() => Ok(tok),
            Ok(_) => Err(JsonError::Syntax { at: s.pos(), what: "trailing" }),
            Err(Stop) => Err(s.error()),
        }
    }

    fn fields(text: &str) -> Result<Fields, JsonError> {
        let mut s = Scanner::new(text, 0, 0);
        let mut fields = [None; 8];
        match s.fields(&mut fields, None) {
            Ok(()) => Ok(fields),
            Err(Stop) => Err(s.error()),
        }
    }

    fn ok(text: &str) -> Kind {
        match scan(text) {
            Ok(tok) => tok.kind,
            Err(e) => panic!("{text:?}: {e:?}"),
        }
    }

    fn bad(text: &str) -> JsonError {
        scan(text).expect_err(text)
    }

    #[test]
    fn scans_scalars_and_kinds() {
        assert_eq!(ok("null"), Kind::Null);
        assert_eq!(ok(" true "), Kind::Bool);
        assert_eq!(ok("false"), Kind::Bool);
        assert_eq!(ok("0"), Kind::Integer);
        assert_eq!(ok("-0"), Kind::Integer);
        assert_eq!(ok("1700000000000"), Kind::Integer);
        assert_eq!(ok("1700000000000.0"), Kind::Number);
        assert_eq!(ok("1.7e12"), Kind::Number);
        assert_eq!(ok("1E+2"), Kind::Number);
        assert_eq!(ok(r#""a""#), Kind::Str);
        assert_eq!(ok(r#""a\n""#), Kind::EscapedStr);
        assert_eq!(ok(r#"["a","b"]"#), Kind::StringArray);
        assert_eq!(ok("[]"), Kind::StringArray);
        assert_eq!(ok(r#"["a",1]"#), Kind::Array);
        assert_eq!(ok(r#"{"a":[{}],"b":{"c":null}}"#), Kind::Object);
    }

    #[test]
    fn rejects_what_rfc_8259_rejects() {
        for text in [
            "",
            "NaN",
            "Infinity",
            "-Infinity",
            "01",
            "-01",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "-",
            "[1,]",
            "[1 2]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            "{1:1}",
            "'a'",
            "tru",
            "nul",
            "[",
            "{",
            r#""abc"#,
            "\"a\tb\"",
            "\"a\u{1}b\"",
            r#""\x41""#,
            r#""\u12""#,
            r#""\u12G4""#,
            "1 2",
            "[1]]",
            "/* c */ 1",
            "1 // c",
            "\u{feff}1",
        ] {
            assert!(scan(text).is_err(), "{text:?} was accepted");
        }
    }

    #[test]
    fn surrogates_must_pair() {
        assert_eq!(ok(r#""\ud83d\ude00""#), Kind::EscapedStr);
        assert!(matches!(bad(r#""\ud83d""#), JsonError::Syntax { at: 1, .. }));
        assert!(scan(r#""\ud83dx""#).is_err());
        assert!(scan(r#""\ud83d\u0041""#).is_err());
        assert!(scan(r#""\ud83d\ud83d""#).is_err());
        assert!(scan(r#""\ude00""#).is_err());
        assert!(scan(r#""\ude00\ud83d""#).is_err());
    }

    #[test]
    fn decodes_escapes() {
        let text = r#""a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z""#;
        assert_eq!(scan(text).unwrap().string(text).unwrap(), "a\"\\/\u{8}\u{c}\n\r\té\u{1F600}z");
        let text = r#""plain""#;
        assert!(matches!(scan(text).unwrap().string(text), Some(Cow::Borrowed("plain"))));
        assert_eq!(scan("1").unwrap().string("1"), None);
    }

    #[test]
    fn duplicate_keys_at_any_depth_after_decoding() {
        assert!(matches!(
            bad(r#"{"a":1,"a":2}"#),
            JsonError::DuplicateKey { at: 7, ref key } if key == "a"
        ));
        assert!(matches!(
            bad(r#"[{"x":{"k":1,"\u006b":2}}]"#),
            JsonError::DuplicateKey { ref key, .. } if key == "k"
        ));
        // Many keys spill into the hash set; a repeat is still found.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert_eq!(ok(&format!("{{{}}}", many.join(","))), Kind::Object);
        assert!(scan(&format!("{{{},\"k3\":0}}", many.join(","))).is_err());
        assert!(scan(r#"{"\u0061":1,"b":2,"a":3}"#).is_err());
        assert_eq!(ok(r#"{"a":{"a":1},"b":[{"a":1},{"a":2}]}"#), Kind::Object);
    }

    #[test]
    fn fields_keeps_known_keys_and_checks_all() {
        let text = r#"{"s":"A","x":1,"\u0070":2,"type":"t"}"#;
        let found = fields(text).unwrap();
        assert_eq!(found[S].unwrap().raw(text), r#""A""#);
        assert_eq!(found[P].unwrap().raw(text), "2");
        assert_eq!(found[TYPE].unwrap().raw(text), r#""t""#);
        assert!(found[V].is_none());
        assert!(matches!(
            fields(r#"{"p":1,"\u0070":2}"#),
            Err(JsonError::DuplicateKey { at: 7, ref key }) if key == "p"
        ));
        assert!(fields(r#"{"x":1,"y":2,"\u0078":2}"#).is_err());
        assert!(fields(r#"{"\u0078":1,"y":2,"x":2}"#).is_err());
        assert!(fields(r#"{"x":1,"y":2,"x ":2}"#).is_ok());
    }

    #[test]
    fn keeps_a_bounded_number_of_data_elements() {
        let scan = |n: usize| {
            let data: Vec<String> = (0..n).map(|i| format!(r#"{{"p":{i}}}"#)).collect();
            let text = format!(r#"{{"x":[1],"data":[{}]}}"#, data.join(","));
            let mut elements = Elements::default();
            let mut found = [None; 8];
            let mut s = Scanner::new(&text, 0, 0);
            assert_eq!(s.fields(&mut found, Some(&mut elements)), Ok(()));
            assert_eq!(found[DATA].map(|tok| tok.kind), Some(Kind::Array));
            let last = elements.list.last().map(|e| e.fields[P].unwrap().raw(&text).to_owned());
            (elements.list.len(), elements.overflow, last)
        };
        assert_eq!(scan(3), (3, false, Some("2".to_owned())));
        assert_eq!(scan(MAX_KEPT_ELEMENTS), (MAX_KEPT_ELEMENTS, false, Some("1023".to_owned())));
        assert_eq!(scan(MAX_KEPT_ELEMENTS + 1).0, MAX_KEPT_ELEMENTS);
        assert!(scan(MAX_KEPT_ELEMENTS + 1).1);
    }

    #[test]
    fn depth_is_capped_without_recursing_further() {
        let ok_depth = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(scan(&ok_depth).is_ok());
        let too_deep = format!("{}{}", "[".repeat(129), "]".repeat(129));
        assert!(matches!(bad(&too_deep), JsonError::Syntax { at: 128, .. }));
        let bomb = "[{\"a\":".repeat(100_000);
        assert!(scan(&bomb).is_err());
    }
}

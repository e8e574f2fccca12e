//! S-expressions as Guix keeps keys, ACLs and signatures in them: the
//! "advanced" text form that libgcrypt's `gcry_sexp_sprint` writes and
//! `gcry_sexp_new` reads (see docs/guix.md).
//!
//! ```text
//! sexp     = ws* list ws*
//! list     = "(" ws* (item ws*)* ")"
//! item     = list | token | hex | string | verbatim
//! token    = tokstart tokchar*         tokstart = ALPHA | one of "-./_:*+="
//!                                      tokchar  = tokstart | DIGIT
//! hex      = "#" (HEXDIG HEXDIG)* "#"
//! string   = DQUOTE (byte other than DQUOTE and "\" | escape)* DQUOTE
//! escape   = "\" (one of "btvnfr\"'\\" | "x" HEXDIG HEXDIG | 3 octal digits | newline)
//! verbatim = length ":" bytes          length = "0" | decimal without leading zero
//! ws       = " " | TAB | LF | CR | VT | FF
//! ```
//!
//! A token, a hex string, a quoted string and a verbatim string are four
//! spellings of the same thing, an atom of bytes. The parser is strict where
//! libgcrypt is lenient: no base64 `|…|`, no display hints `[…]`, no length
//! before a hex or quoted string, no whitespace inside hex, exactly one list
//! and nothing after it. Inputs are bounded by [`MAX_SEXP_LEN`] and
//! [`MAX_SEXP_DEPTH`].
//!
//! [`Sexp::to_advanced`] writes exactly what libgcrypt writes (each nested
//! list on its own line, indented by its depth, closing parentheses of
//! trailing lists on lines of their own, a final newline); atoms are written
//! as a token, a quoted string or hex by libgcrypt's rule.

use std::fmt;

/// The longest s-expression text accepted (keys and signatures are < 1 KiB;
/// an ACL of a few hundred keys fits).
pub const MAX_SEXP_LEN: usize = 1 << 20;

/// The deepest nesting accepted (Guix uses at most 4).
pub const MAX_SEXP_DEPTH: usize = 32;

/// Characters that may continue a token (libgcrypt's `tokenchars`).
const TOKEN_SPECIALS: &[u8] = b"-./_:*+=";

/// An s-expression: a list or an atom of bytes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Sexp {
    /// Bytes: a token, a string or binary data.
    Atom(Vec<u8>),
    /// A list of s-expressions.
    List(Vec<Sexp>),
}

/// Why a text is not an s-expression; every variant says where (the byte
/// offset in the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SexpError {
    /// The input is longer than [`MAX_SEXP_LEN`].
    #[error("s-expression of {len} bytes is longer than {MAX_SEXP_LEN}")]
    TooLong {
        /// The input's length.
        len: usize,
    },
    /// The input ended inside an expression (a truncated s-expression).
    #[error("s-expression truncated at byte {offset}: expected {expected}")]
    Truncated {
        /// The input's length.
        offset: usize,
        /// What should have come next.
        expected: &'static str,
    },
    /// A byte that cannot start or continue what is being read.
    #[error(
        "unexpected byte {byte:#04x} at byte {offset} of the s-expression: expected {expected}"
    )]
    Unexpected {
        /// Where.
        offset: usize,
        /// The byte.
        byte: u8,
        /// What would have been valid there.
        expected: &'static str,
    },
    /// A form libgcrypt knows but Guix never writes.
    #[error("{what} at byte {offset} of the s-expression is not supported")]
    Unsupported {
        /// Where.
        offset: usize,
        /// "base64 data", "a display hint", …
        what: &'static str,
    },
    /// A hex string with an odd number of digits.
    #[error("odd number of hex digits in the string ending at byte {offset}")]
    OddHex {
        /// Where the closing `#` is.
        offset: usize,
    },
    /// A malformed escape in a quoted string.
    #[error("invalid escape in the quoted string at byte {offset}")]
    BadEscape {
        /// Where the backslash is.
        offset: usize,
    },
    /// A verbatim length that is malformed or runs past the end.
    #[error("invalid length prefix at byte {offset}: {reason}")]
    BadLength {
        /// Where the length starts.
        offset: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Nesting deeper than [`MAX_SEXP_DEPTH`].
    #[error("s-expression nested deeper than {MAX_SEXP_DEPTH} at byte {offset}")]
    TooDeep {
        /// Where the list that is too deep opens.
        offset: usize,
    },
    /// The top level is an atom, not a list.
    #[error("s-expression at byte {offset} is an atom; a list was expected")]
    NotAList {
        /// Where the atom starts.
        offset: usize,
    },
    /// Something after the complete expression.
    #[error("trailing data at byte {offset} after the s-expression")]
    Trailing {
        /// Where the extra data starts.
        offset: usize,
    },
}

impl SexpError {
    /// The byte offset in the input the error is about.
    pub fn offset(&self) -> usize {
        match self {
            SexpError::TooLong { len } => *len,
            SexpError::Truncated { offset, .. }
            | SexpError::Unexpected { offset, .. }
            | SexpError::Unsupported { offset, .. }
            | SexpError::OddHex { offset }
            | SexpError::BadEscape { offset }
            | SexpError::BadLength { offset, .. }
            | SexpError::TooDeep { offset }
            | SexpError::NotAList { offset }
            | SexpError::Trailing { offset } => *offset,
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_token_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || TOKEN_SPECIALS.contains(&b)
}

fn is_token_char(b: u8) -> bool {
    is_token_start(b) || b.is_ascii_digit()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.pos += 1;
        }
    }

    fn truncated(&self, expected: &'static str) -> SexpError {
        SexpError::Truncated {
            offset: self.input.len(),
            expected,
        }
    }

    /// Read one item at the current position (not whitespace).
    fn item(&mut self, depth: usize) -> Result<Sexp, SexpError> {
        let start = self.pos;
        let Some(b) = self.peek() else {
            return Err(self.truncated("an s-expression"));
        };
        match b {
            b'(' => self.list(depth),
            b'#' => self.hex(),
            b'"' => self.quoted(),
            b'1'..=b'9' => self.verbatim(),
            // The empty atom's canonical form; any other length with a
            // leading zero is refused, as libgcrypt does.
            b'0' if self.input.get(start + 1) == Some(&b':') => {
                self.pos += 2;
                Ok(Sexp::Atom(Vec::new()))
            }
            b'0' => Err(SexpError::BadLength {
                offset: start,
                reason: "a length may not begin with 0",
            }),
            b'|' => Err(SexpError::Unsupported {
                offset: start,
                what: "base64 data",
            }),
            b'[' => Err(SexpError::Unsupported {
                offset: start,
                what: "a display hint",
            }),
            b'{' => Err(SexpError::Unsupported {
                offset: start,
                what: "transport (base64) encoding",
            }),
            b if is_token_start(b) => {
                while self.peek().is_some_and(is_token_char) {
                    self.pos += 1;
                }
                Ok(Sexp::Atom(self.input[start..self.pos].to_vec()))
            }
            byte => Err(SexpError::Unexpected {
                offset: start,
                byte,
                expected: "an s-expression",
            }),
        }
    }

    fn list(&mut self, depth: usize) -> Result<Sexp, SexpError> {
        if depth >= MAX_SEXP_DEPTH {
            return Err(SexpError::TooDeep { offset: self.pos });
        }
        self.pos += 1; // the "("
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.truncated("\")\" or an item")),
                Some(b')') => {
                    self.pos += 1;
                    return Ok(Sexp::List(items));
                }
                Some(_) => {
                    let item = self.item(depth + 1)?;
                    // Two atoms must be separated: "abc#00#" is one token
                    // then hex in libgcrypt too, but "3:abcdef" is not two.
                    items.push(item);
                }
            }
        }
    }

    fn hex(&mut self) -> Result<Sexp, SexpError> {
        self.pos += 1; // the "#"
        let mut out = Vec::new();
        let mut high: Option<u8> = None;
        loop {
            let Some(b) = self.peek() else {
                return Err(self.truncated("hex digits or \"#\""));
            };
            if b == b'#' {
                if high.is_some() {
                    return Err(SexpError::OddHex { offset: self.pos });
                }
                self.pos += 1;
                return Ok(Sexp::Atom(out));
            }
            let Some(v) = hex_val(b) else {
                return Err(SexpError::Unexpected {
                    offset: self.pos,
                    byte: b,
                    expected: "a hex digit or \"#\"",
                });
            };
            match high.take() {
                None => high = Some(v),
                Some(h) => out.push(h << 4 | v),
            }
            self.pos += 1;
        }
    }

    fn quoted(&mut self) -> Result<Sexp, SexpError> {
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.truncated("the end of the quoted string"));
            };
            match b {
                b'"' => {
                    self.pos += 1;
                    return Ok(Sexp::Atom(out));
                }
                b'\\' => {
                    let at = self.pos;
                    let Some(e) = self.input.get(at + 1).copied() else {
                        return Err(self.truncated("an escape"));
                    };
                    let simple = match e {
                        b'b' => Some(0x08),
                        b't' => Some(b'\t'),
                        b'v' => Some(0x0b),
                        b'n' => Some(b'\n'),
                        b'f' => Some(0x0c),
                        b'r' => Some(b'\r'),
                        b'"' | b'\'' | b'\\' => Some(e),
                        _ => None,
                    };
                    if let Some(v) = simple {
                        out.push(v);
                        self.pos = at + 2;
                    } else if e == b'x' {
                        let h = self.input.get(at + 2).copied().and_then(hex_val);
                        let l = self.input.get(at + 3).copied().and_then(hex_val);
                        let (Some(h), Some(l)) = (h, l) else {
                            return Err(SexpError::BadEscape { offset: at });
                        };
                        out.push(h << 4 | l);
                        self.pos = at + 4;
                    } else if (b'0'..=b'7').contains(&e) {
                        let digits = self.input.get(at + 1..at + 4);
                        let Some(d) =
                            digits.filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
                        else {
                            return Err(SexpError::BadEscape { offset: at });
                        };
                        let v = u32::from(d[0] - b'0') * 64
                            + u32::from(d[1] - b'0') * 8
                            + u32::from(d[2] - b'0');
                        let Ok(v) = u8::try_from(v) else {
                            return Err(SexpError::BadEscape { offset: at });
                        };
                        out.push(v);
                        self.pos = at + 4;
                    } else if e == b'\n' || e == b'\r' {
                        // A line continuation: the line break is not data;
                        // CR LF and LF CR count as one break.
                        let mut next = at + 2;
                        let pair = if e == b'\n' { b'\r' } else { b'\n' };
                        if self.input.get(next) == Some(&pair) {
                            next += 1;
                        }
                        self.pos = next;
                    } else {
                        return Err(SexpError::BadEscape { offset: at });
                    }
                }
                _ => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn verbatim(&mut self) -> Result<Sexp, SexpError> {
        let start = self.pos;
        let mut len: usize = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            len = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(b - b'0')))
                .filter(|l| *l <= MAX_SEXP_LEN)
                .ok_or(SexpError::BadLength {
                    offset: start,
                    reason: "too large",
                })?;
            self.pos += 1;
        }
        match self.peek() {
            Some(b':') => {}
            Some(b'#' | b'"' | b'|') => {
                return Err(SexpError::Unsupported {
                    offset: start,
                    what: "a length before a hex, quoted or base64 string",
                });
            }
            None => return Err(self.truncated("\":\" after a length")),
            Some(byte) => {
                return Err(SexpError::Unexpected {
                    offset: self.pos,
                    byte,
                    expected: "a digit or \":\"",
                });
            }
        }
        self.pos += 1;
        let end = self.pos + len;
        let Some(data) = self.input.get(self.pos..end) else {
            return Err(SexpError::BadLength {
                offset: start,
                reason: "runs past the end of the input",
            });
        };
        self.pos = end;
        Ok(Sexp::Atom(data.to_vec()))
    }
}

impl Sexp {
    /// An atom holding `bytes`.
    pub fn atom(bytes: impl Into<Vec<u8>>) -> Self {
        Sexp::Atom(bytes.into())
    }

    /// A list of `items`.
    pub fn list(items: impl Into<Vec<Sexp>>) -> Self {
        Sexp::List(items.into())
    }

    /// Parse exactly one list, with optional whitespace around it.
    pub fn parse(input: &[u8]) -> Result<Self, SexpError> {
        if input.len() > MAX_SEXP_LEN {
            return Err(SexpError::TooLong { len: input.len() });
        }
        let mut p = Parser { input, pos: 0 };
        p.skip_ws();
        let start = p.pos;
        let sexp = p.item(0)?;
        if matches!(sexp, Sexp::Atom(_)) {
            return Err(SexpError::NotAList { offset: start });
        }
        p.skip_ws();
        if p.pos != input.len() {
            return Err(SexpError::Trailing { offset: p.pos });
        }
        Ok(sexp)
    }

    /// The bytes of an atom; `None` for a list.
    pub fn as_atom(&self) -> Option<&[u8]> {
        match self {
            Sexp::Atom(a) => Some(a),
            Sexp::List(_) => None,
        }
    }

    /// The items of a list; `None` for an atom.
    pub fn as_list(&self) -> Option<&[Sexp]> {
        match self {
            Sexp::Atom(_) => None,
            Sexp::List(l) => Some(l),
        }
    }

    /// The token a list starts with (`public-key` for
    /// `(public-key …)`), if it starts with an atom.
    pub fn head(&self) -> Option<&[u8]> {
        self.as_list()?.first()?.as_atom()
    }

    /// If this is a list starting with the atom `name`, the rest of it.
    pub fn tagged(&self, name: &str) -> Option<&[Sexp]> {
        let l = self.as_list()?;
        (l.first()?.as_atom()? == name.as_bytes()).then(|| &l[1..])
    }

    /// The canonical form (`(3:abc2:de)`): lengths, no whitespace.
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut out);
        out
    }

    fn write_canonical(&self, out: &mut Vec<u8>) {
        match self {
            Sexp::Atom(a) => {
                out.extend_from_slice(a.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(a);
            }
            Sexp::List(l) => {
                out.push(b'(');
                for i in l {
                    i.write_canonical(out);
                }
                out.push(b')');
            }
        }
    }

    /// The advanced form, byte for byte as libgcrypt's `gcry_sexp_sprint`
    /// with `GCRYSEXP_FMT_ADVANCED` writes it (and Guix stores it).
    pub fn to_advanced(&self) -> Vec<u8> {
        let mut w = AdvancedWriter {
            out: Vec::new(),
            indent: 0,
        };
        // libgcrypt walks a flat stream of open/data/close marks; `next`
        // tells each mark what follows it.
        w.write(self, Next::End);
        w.out.push(b'\n');
        w.out
    }
}

/// What follows an element in the flat stream libgcrypt prints from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Next {
    Open,
    Data,
    Close,
    End,
}

struct AdvancedWriter {
    out: Vec<u8>,
    indent: usize,
}

impl AdvancedWriter {
    fn newline_indent(&mut self) {
        self.out.push(b'\n');
        self.out.extend(std::iter::repeat_n(b' ', self.indent));
    }

    fn write(&mut self, sexp: &Sexp, next: Next) {
        match sexp {
            Sexp::List(items) => {
                if self.indent > 0 {
                    self.newline_indent();
                }
                self.out.push(b'(');
                self.indent += 1;
                for (i, item) in items.iter().enumerate() {
                    let after = match items.get(i + 1) {
                        None => Next::Close,
                        Some(Sexp::List(_)) => Next::Open,
                        Some(Sexp::Atom(_)) => Next::Data,
                    };
                    self.write(item, after);
                }
                self.out.push(b')');
                self.indent = self.indent.saturating_sub(1);
                if next == Next::Close || next == Next::Data {
                    self.newline_indent();
                }
            }
            Sexp::Atom(a) => {
                write_atom(&mut self.out, a);
                if next != Next::Close {
                    self.out.push(b' ');
                }
            }
        }
    }
}

/// How libgcrypt spells an atom: 0 = hex, 1 = quoted string, 2 = token.
fn encoding(a: &[u8]) -> u8 {
    let Some(&first) = a.first() else {
        return 1;
    };
    if first & 0x80 != 0 || first == 0 {
        return 0;
    }
    let mut maybe_token = true;
    for &b in a {
        if (b < 0x20 || (0x7f..=0xa0).contains(&b)) && !b"\x08\t\x0b\n\x0c\r\"'\\".contains(&b) {
            return 0;
        }
        if maybe_token && !b.is_ascii_alphanumeric() && !TOKEN_SPECIALS.contains(&b) {
            maybe_token = false;
        }
    }
    if maybe_token && !first.is_ascii_digit() {
        2
    } else {
        1
    }
}

fn write_atom(out: &mut Vec<u8>, a: &[u8]) {
    match encoding(a) {
        2 => out.extend_from_slice(a),
        1 => {
            out.push(b'"');
            for &b in a {
                match b {
                    0x08 => out.extend_from_slice(b"\\b"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    0x0b => out.extend_from_slice(b"\\v"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    0x0c => out.extend_from_slice(b"\\f"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\'' => out.extend_from_slice(b"\\'"),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b if b < 0x20 || (0x7f..=0xa0).contains(&b) => {
                        out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
                    }
                    b => out.push(b),
                }
            }
            out.push(b'"');
        }
        _ => {
            out.push(b'#');
            out.extend_from_slice(hex::encode_upper(a).as_bytes());
            out.push(b'#');
        }
    }
}

impl fmt::Debug for Sexp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sexp::Atom(a) => {
                let mut out = Vec::new();
                write_atom(&mut out, a);
                f.write_str(&String::from_utf8_lossy(&out))
            }
            Sexp::List(l) => {
                f.write_str("(")?;
                for (i, item) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{item:?}")?;
                }
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A public key as `guix archive --generate-key` writes it (libgcrypt 1.10).
    const PUBKEY: &str = "(public-key \n (ecc \n  (curve Ed25519)\n  (q #3E790E26EA617527719FE3C1FCCB5D0C937F29E3EF3271ACD8FC3DAA264289E8#)\n  )\n )\n";

    #[test]
    fn advanced_form_round_trips_byte_for_byte() {
        let s = Sexp::parse(PUBKEY.as_bytes()).unwrap();
        assert_eq!(s.head(), Some(&b"public-key"[..]));
        assert_eq!(String::from_utf8(s.to_advanced()).unwrap(), PUBKEY);
    }

    #[test]
    fn spellings_of_one_atom_agree() {
        let a = Sexp::parse(b"(abc #616263# \"abc\" 3:abc)").unwrap();
        let l = a.as_list().unwrap();
        assert!(l.iter().all(|x| x.as_atom() == Some(&b"abc"[..])));
        assert_eq!(a.to_canonical(), b"(3:abc3:abc3:abc3:abc)");
        assert_eq!(a.to_advanced(), b"(abc abc abc abc)\n");
    }

    #[test]
    fn writes_strings_and_hex_as_libgcrypt_does() {
        let s = Sexp::list([
            Sexp::atom(&b"a b"[..]),
            Sexp::atom(&b"1st"[..]),
            Sexp::atom(&b"\x00\x01"[..]),
            Sexp::atom(&b"\xff"[..]),
            Sexp::atom(&b"x\ty\x01"[..]),
            Sexp::atom(&b""[..]),
            Sexp::atom(&b"x\ty\"\xe9"[..]),
        ]);
        assert_eq!(
            s.to_advanced(),
            b"(\"a b\" \"1st\" #0001# #FF# #78097901# \"\" \"x\\ty\\\"\xe9\")\n"
        );
        assert_eq!(Sexp::parse(&s.to_advanced()).unwrap(), s);
    }

    #[test]
    fn nested_layout() {
        let s = Sexp::parse(b"(a (b (c d)) (e) f)").unwrap();
        assert_eq!(
            String::from_utf8(s.to_advanced()).unwrap(),
            "(a \n (b \n  (c d)\n  )\n (e)\n f)\n"
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        for n in 0..PUBKEY.trim_end().len() {
            let e = Sexp::parse(&PUBKEY.as_bytes()[..n]).unwrap_err();
            assert!(e.offset() <= n, "{e} at {n}");
        }
    }

    #[test]
    fn malformed_inputs_say_where() {
        let cases: &[(&[u8], SexpError)] = &[
            (b"(a #abc#)", SexpError::OddHex { offset: 7 }),
            (
                b"(a #zz#)",
                SexpError::Unexpected {
                    offset: 4,
                    byte: b'z',
                    expected: "a hex digit or \"#\"",
                },
            ),
            (b"(a) b", SexpError::Trailing { offset: 4 }),
            (b"abc", SexpError::NotAList { offset: 0 }),
            (
                b"(a |YWJj|)",
                SexpError::Unsupported {
                    offset: 3,
                    what: "base64 data",
                },
            ),
            (
                b"([x]a)",
                SexpError::Unsupported {
                    offset: 1,
                    what: "a display hint",
                },
            ),
            (
                b"(5:ab)",
                SexpError::BadLength {
                    offset: 1,
                    reason: "runs past the end of the input",
                },
            ),
            (
                b"(01:a)",
                SexpError::BadLength {
                    offset: 1,
                    reason: "a length may not begin with 0",
                },
            ),
            (b"(\"a\\q\")", SexpError::BadEscape { offset: 3 }),
            (
                b"(a ^)",
                SexpError::Unexpected {
                    offset: 3,
                    byte: b'^',
                    expected: "an s-expression",
                },
            ),
            (
                b"(a",
                SexpError::Truncated {
                    offset: 2,
                    expected: "\")\" or an item",
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                &Sexp::parse(input).unwrap_err(),
                want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        let deep = format!("{}{}", "(".repeat(40), ")".repeat(40));
        assert!(matches!(
            Sexp::parse(deep.as_bytes()),
            Err(SexpError::TooDeep { .. })
        ));
    }

    fn arb_sexp() -> impl Strategy<Value = Sexp> {
        let atom = prop::collection::vec(any::<u8>(), 0..40).prop_map(Sexp::Atom);
        let leaf = prop_oneof![
            atom,
            "[a-z][a-z0-9.-]{0,10}".prop_map(|s| Sexp::Atom(s.into_bytes()))
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop::collection::vec(inner, 0..6).prop_map(Sexp::List)
        })
        .prop_map(|s| match s {
            Sexp::Atom(_) => Sexp::List(vec![s]),
            l => l,
        })
    }

    proptest! {
        #[test]
        fn advanced_and_canonical_forms_round_trip(s in arb_sexp()) {
            let adv = s.to_advanced();
            prop_assert_eq!(&Sexp::parse(&adv).unwrap(), &s);
            prop_assert_eq!(Sexp::parse(&s.to_canonical()).unwrap(), s.clone());
            // Writing what was read gives the same bytes again.
            prop_assert_eq!(Sexp::parse(&adv).unwrap().to_advanced(), adv);
        }
    }
}

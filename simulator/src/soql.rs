//! The SOQL the simulator understands: `SELECT fields FROM object [WHERE a op b [AND ...]]
//! [ORDER BY f [ASC|DESC]] [LIMIT n]`, with Salesforce's errors for what it refuses.

use chrono::DateTime;

use crate::org::{ObjectDef, Org};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoqlError {
    pub code: &'static str,
    pub message: String,
}

fn malformed(message: impl Into<String>) -> SoqlError {
    SoqlError {
        code: "MALFORMED_QUERY",
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    /// Milliseconds since the epoch.
    DateTime(i64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub field: usize,
    pub op: Op,
    pub value: Literal,
}

/// A query checked against the org's schema.
#[derive(Debug, Clone)]
pub struct Query {
    pub object: usize,
    /// Selected field positions, in the requested order.
    pub fields: Vec<usize>,
    pub conditions: Vec<Condition>,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Symbol(&'static str),
}

fn tokenize(soql: &str) -> Result<Vec<Token>, SoqlError> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = soql.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut text = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(malformed("unterminated string literal")),
                    Some('\\') => {
                        if let Some(next) = chars.get(i + 1) {
                            text.push(*next);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(other) => {
                        text.push(*other);
                        i += 1;
                    }
                }
            }
            tokens.push(Token::Text(text));
        } else if ",();".contains(c) {
            tokens.push(Token::Symbol(match c {
                ',' => ",",
                '(' => "(",
                ')' => ")",
                _ => ";",
            }));
            i += 1;
        } else if "=!<>".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let symbol = match two.as_str() {
                "!=" => "!=",
                "<=" => "<=",
                ">=" => ">=",
                "<>" => "!=",
                _ => match c {
                    '=' => "=",
                    '<' => "<",
                    '>' => ">",
                    _ => return Err(malformed(format!("unexpected token: '{c}'"))),
                },
            };
            i += if symbol.len() == 2 || two == "<>" {
                2
            } else {
                1
            };
            tokens.push(Token::Symbol(symbol));
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !",();'=!<>".contains(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }
    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect_keyword(&mut self, word: &str) -> Result<(), SoqlError> {
        if self.keyword(word) {
            Ok(())
        } else {
            Err(malformed(format!(
                "expecting '{word}', found '{}'",
                self.describe_next()
            )))
        }
    }
    fn word(&mut self) -> Result<String, SoqlError> {
        match self.next() {
            Some(Token::Word(w)) => Ok(w),
            other => Err(malformed(format!(
                "unexpected token: '{}'",
                show(other.as_ref())
            ))),
        }
    }
    fn describe_next(&self) -> String {
        show(self.peek())
    }
}

fn show(token: Option<&Token>) -> String {
    match token {
        None => "<end of query>".into(),
        Some(Token::Word(w)) => w.clone(),
        Some(Token::Text(t)) => format!("'{t}'"),
        Some(Token::Symbol(s)) => s.to_string(),
    }
}

fn parse_datetime(word: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(word)
        .ok()
        .or_else(|| DateTime::parse_from_str(word, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
        .map(|d| d.timestamp_millis())
}

fn literal(token: Option<Token>) -> Result<Literal, SoqlError> {
    match token {
        Some(Token::Text(t)) => Ok(Literal::Text(t)),
        Some(Token::Word(w)) => {
            if w.eq_ignore_ascii_case("null") {
                Ok(Literal::Null)
            } else if w.eq_ignore_ascii_case("true") || w.eq_ignore_ascii_case("false") {
                Ok(Literal::Bool(w.eq_ignore_ascii_case("true")))
            } else if let Some(ms) = parse_datetime(&w) {
                Ok(Literal::DateTime(ms))
            } else if w.len() == 10 && w.as_bytes()[4] == b'-' {
                Ok(Literal::Text(w))
            } else if let Ok(n) = w.parse::<f64>() {
                Ok(Literal::Number(n))
            } else {
                Err(malformed(format!("unexpected token: '{w}'")))
            }
        }
        other => Err(malformed(format!(
            "unexpected token: '{}'",
            show(other.as_ref())
        ))),
    }
}

fn no_such_column(field: &str, object: &ObjectDef) -> SoqlError {
    SoqlError {
        code: "INVALID_FIELD",
        message: format!(
            "\n{field}\n^\nERROR at Row:1:Column:8\nNo such column '{field}' on entity '{}'. \
             If you are attempting to use a custom field, be sure to append the '__c' after the \
             custom field name.",
            object.name
        ),
    }
}

/// Parses `soql` and checks it against the org.
pub fn parse(org: &Org, soql: &str) -> Result<Query, SoqlError> {
    let mut parser = Parser {
        tokens: tokenize(soql)?,
        at: 0,
    };
    parser.expect_keyword("SELECT")?;
    // Field names first; resolved once the object is known.
    let mut names: Vec<String> = Vec::new();
    let mut fields_function: Option<String> = None;
    loop {
        let word = parser.word()?;
        if word.eq_ignore_ascii_case("FIELDS") && parser.peek() == Some(&Token::Symbol("(")) {
            parser.next();
            let kind = parser.word()?;
            if parser.next() != Some(Token::Symbol(")")) {
                return Err(malformed("expecting ')' after FIELDS("));
            }
            fields_function = Some(kind.to_ascii_uppercase());
        } else {
            names.push(word);
        }
        if parser.peek() == Some(&Token::Symbol(",")) {
            parser.next();
        } else {
            break;
        }
    }
    parser.expect_keyword("FROM")?;
    let object_name = parser.word()?;
    let Some((object, def)) = org.object(&object_name) else {
        return Err(SoqlError {
            code: "INVALID_TYPE",
            message: format!(
                "\nFROM {object_name}\n     ^\nERROR at Row:1:Column:15\nsObject type '{object_name}' is not supported. \
                 If you are attempting to use a custom object, be sure to append the '__c' after \
                 the entity name."
            ),
        });
    };
    let mut fields = Vec::new();
    if let Some(kind) = &fields_function {
        for (i, f) in def.visible_fields() {
            let take = match kind.as_str() {
                "ALL" => true,
                "CUSTOM" => f.custom,
                "STANDARD" => !f.custom,
                _ => return Err(malformed(format!("unknown FIELDS() argument {kind}"))),
            };
            if take {
                fields.push(i);
            }
        }
    }
    for name in &names {
        let (i, _) = def.field(name).ok_or_else(|| no_such_column(name, def))?;
        fields.push(i);
    }
    let mut conditions = Vec::new();
    if parser.keyword("WHERE") {
        loop {
            let name = parser.word()?;
            let (field, _) = def.field(&name).ok_or_else(|| no_such_column(&name, def))?;
            let op = match parser.next() {
                Some(Token::Symbol("=")) => Op::Eq,
                Some(Token::Symbol("!=")) => Op::Ne,
                Some(Token::Symbol("<")) => Op::Lt,
                Some(Token::Symbol("<=")) => Op::Le,
                Some(Token::Symbol(">")) => Op::Gt,
                Some(Token::Symbol(">=")) => Op::Ge,
                other => {
                    return Err(malformed(format!(
                        "unexpected token: '{}'",
                        show(other.as_ref())
                    )));
                }
            };
            let value = literal(parser.next())?;
            conditions.push(Condition { field, op, value });
            if !parser.keyword("AND") {
                break;
            }
        }
    }
    if parser.keyword("ORDER") {
        parser.expect_keyword("BY")?;
        let name = parser.word()?;
        def.field(&name).ok_or_else(|| no_such_column(&name, def))?;
        let _ = parser.keyword("ASC") || parser.keyword("DESC");
    }
    let mut limit = None;
    if parser.keyword("LIMIT") {
        let n = parser.word()?;
        limit = Some(
            n.parse::<u64>()
                .map_err(|_| malformed(format!("invalid LIMIT {n}")))?,
        );
    }
    if parser.peek().is_some() {
        return Err(malformed(format!(
            "unexpected token: '{}'",
            parser.describe_next()
        )));
    }
    if fields_function.is_some() && limit.is_none_or(|l| l > 200) {
        return Err(malformed(
            "The SOQL FIELDS function must have a LIMIT of at most 200",
        ));
    }
    Ok(Query {
        object,
        fields,
        conditions,
        limit,
    })
}

/// Whether a row's text value satisfies a condition.
pub fn matches(sf_type: &str, value: Option<&str>, op: Op, literal: &Literal) -> bool {
    use std::cmp::Ordering;
    let ordering: Option<Ordering> = match (literal, value) {
        (Literal::Null, None) => Some(Ordering::Equal),
        (Literal::Null, Some(_)) | (_, None) => None,
        (Literal::Bool(b), Some(v)) => Some((v == "true").cmp(b)),
        (Literal::Number(n), Some(v)) => v.parse::<f64>().ok().and_then(|x| x.partial_cmp(n)),
        (Literal::DateTime(ms), Some(v)) if sf_type == "datetime" => {
            parse_datetime(v).map(|x| x.cmp(ms))
        }
        (Literal::DateTime(_), Some(_)) => None,
        (Literal::Text(t), Some(v)) => Some(v.cmp(t.as_str())),
    };
    match ordering {
        None => matches!(
            (op, literal, value),
            (Op::Ne, Literal::Null, Some(_)) | (Op::Ne, _, None)
        ),
        Some(o) => match op {
            Op::Eq => o == Ordering::Equal,
            Op::Ne => o != Ordering::Equal,
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Gt => o == Ordering::Greater,
            Op::Ge => o != Ordering::Less,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> Org {
        Org::generate(1, 10)
    }

    #[test]
    fn parses_an_extraction_query() {
        let q = parse(
            &org(),
            "SELECT Id, Name, SystemModstamp FROM Account WHERE SystemModstamp >= 2025-01-01T00:00:00.000Z AND SystemModstamp < 2026-01-01T00:00:00Z",
        )
        .unwrap();
        assert_eq!(q.fields.len(), 3);
        assert_eq!(q.conditions.len(), 2);
        assert_eq!(q.conditions[0].op, Op::Ge);
    }

    #[test]
    fn refuses_what_salesforce_refuses() {
        let err = parse(&org(), "SELECT FIELDS(ALL) FROM Account").unwrap_err();
        assert_eq!(err.code, "MALFORMED_QUERY");
        assert!(err.message.contains("LIMIT of at most 200"));
        assert!(parse(&org(), "SELECT FIELDS(ALL) FROM Account LIMIT 200").is_ok());
        assert_eq!(
            parse(&org(), "SELECT Nope FROM Account").unwrap_err().code,
            "INVALID_FIELD"
        );
        assert_eq!(
            parse(&org(), "SELECT Id FROM Nope__c").unwrap_err().code,
            "INVALID_TYPE"
        );
        assert_eq!(
            parse(&org(), "SELECT Id FROM Account WHERE")
                .unwrap_err()
                .code,
            "MALFORMED_QUERY"
        );
        assert_eq!(
            parse(&org(), "SELECT Id FROM Account; DELETE")
                .unwrap_err()
                .code,
            "MALFORMED_QUERY"
        );
    }

    #[test]
    fn conditions_compare_by_type() {
        let lit = Literal::DateTime(parse_datetime("2025-01-01T00:00:00Z").unwrap());
        assert!(matches(
            "datetime",
            Some("2025-01-01T00:00:00.000Z"),
            Op::Ge,
            &lit
        ));
        assert!(!matches(
            "datetime",
            Some("2025-01-01T00:00:00.000Z"),
            Op::Lt,
            &lit
        ));
        assert!(matches(
            "boolean",
            Some("false"),
            Op::Eq,
            &Literal::Bool(false)
        ));
        assert!(matches("string", None, Op::Eq, &Literal::Null));
        assert!(matches("string", Some("x"), Op::Ne, &Literal::Null));
        assert!(matches(
            "currency",
            Some("10.5"),
            Op::Gt,
            &Literal::Number(10.0)
        ));
    }
}

//! The fake's SOQL: the little sfpipe writes (`SELECT f, ... FROM O [WHERE c op v AND ...]`),
//! run on an object's rows; and the values as Bulk CSV writes them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::ports::salesforce::SalesforceError;

use super::{Org, api_error};

/// The parts of sfpipe's SOQL: fields, object, conditions.
pub(super) struct Soql {
    pub(super) fields: Vec<String>,
    pub(super) object: String,
    pub(super) conditions: Vec<(String, String, String)>,
    pub(super) limit: Option<usize>,
}

pub(super) fn parse_soql(soql: &str) -> Result<Soql, SalesforceError> {
    let malformed = || api_error(400, "MALFORMED_QUERY", &format!("cannot read {soql:?}"));
    let (soql, limit) = match soql.rsplit_once(" LIMIT ") {
        Some((query, limit)) => (query, Some(limit.trim().parse().map_err(|_| malformed())?)),
        None => (soql, None),
    };
    let rest = soql.strip_prefix("SELECT ").ok_or_else(malformed)?;
    let (fields, rest) = rest.split_once(" FROM ").ok_or_else(malformed)?;
    let (object, condition) = match rest.split_once(" WHERE ") {
        Some((object, condition)) => (object, Some(condition)),
        None => (rest, None),
    };
    let mut conditions = Vec::new();
    for part in condition.into_iter().flat_map(|c| c.split(" AND ")) {
        let mut words = part.split_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some(field), Some(op @ (">=" | "<" | "=")), Some(value), None) => {
                conditions.push((field.to_string(), op.to_string(), value.to_string()))
            }
            _ => return Err(malformed()),
        }
    }
    Ok(Soql {
        fields: fields.split(',').map(|f| f.trim().to_string()).collect(),
        object: object.trim().to_string(),
        conditions,
        limit,
    })
}

pub(super) fn as_time(value: &Value) -> Option<DateTime<Utc>> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn holds(
    row: &Map<String, Value>,
    (field, op, literal): &(String, String, String),
) -> bool {
    let value = row.get(field).unwrap_or(&Value::Null);
    match literal.as_str() {
        "true" | "false" => op == "=" && value.as_bool() == Some(literal == "true"),
        _ => {
            let (Some(have), Ok(want)) = (as_time(value), DateTime::parse_from_rfc3339(literal))
            else {
                return false;
            };
            match op.as_str() {
                ">=" => have >= want,
                "<" => have < want,
                _ => have == want,
            }
        }
    }
}

/// Runs the query on the org: the rows it selects, or the error Salesforce gives.
pub(super) fn run(org: &Org, soql: &Soql) -> Result<Vec<Map<String, Value>>, SalesforceError> {
    let object = org.objects.get(&soql.object).ok_or_else(|| {
        api_error(
            400,
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", soql.object),
        )
    })?;
    if let Some(unknown) = soql
        .fields
        .iter()
        .chain(soql.conditions.iter().map(|c| &c.0))
        .find(|f| object.describe.field(f).is_none())
    {
        return Err(api_error(
            400,
            "INVALID_FIELD",
            &format!("No such column '{unknown}' on entity '{}'", soql.object),
        ));
    }
    Ok(object
        .rows
        .iter()
        .filter(|row| soql.conditions.iter().all(|c| holds(row, c)))
        .take(soql.limit.unwrap_or(usize::MAX))
        .cloned()
        .collect())
}

/// A value as Bulk API CSV writes it.
pub(super) fn csv_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

pub(super) fn query_of(url: &str) -> BTreeMap<String, String> {
    url.split_once('?')
        .map(|(_, query)| {
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

//! The demo org: six objects with realistic field types, rows generated on demand from
//! (seed, object, row, version), so a million rows cost no memory until they are read, and the same
//! seed always gives the same org. Mutations (inserts, updates, deletes) are recorded as per-row
//! overrides and can be replayed from their timestamps.

mod catalogue;
mod generate;
mod ids;
mod mutate;
mod rng;
mod words;

pub use catalogue::*;
pub use ids::*;
pub use rng::*;

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// The base timestamp the generated history ends at; base rows were last modified in the two
/// years before it.
pub fn history_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

const HISTORY_MS: i64 = 730 * 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowState {
    pub version: u32,
    pub deleted: bool,
    /// SystemModstamp, in milliseconds since the epoch.
    pub modstamp_ms: i64,
    pub created_ms: i64,
    /// Hard-deleted (purged from the recycle bin, or deleted without it): the row is gone from
    /// every query, queryAll too. `deleted` is set as well.
    #[serde(default)]
    pub purged: bool,
}

/// One object's rows: `count` rows; the ones a mutation touched have an override.
#[derive(Debug, Clone)]
pub struct ObjectRows {
    pub count: u64,
    pub overrides: HashMap<u64, RowState>,
}

/// The org's data: what a seed, a size and a list of mutation rounds make.
#[derive(Debug, Clone)]
pub struct Org {
    pub seed: u64,
    pub rows: u64,
    pub objects: Vec<ObjectDef>,
    pub data: Vec<ObjectRows>,
    /// When each mutation round happened.
    pub rounds: Vec<DateTime<Utc>>,
    /// Whether mutation rounds also hard-delete rows (about 0.25% per object and round).
    pub hard_deletes: bool,
}

/// What a mutation round changed, per object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutationCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Hard-deleted: gone from every query, without a trace.
    #[serde(default)]
    pub purged: u64,
}

pub const DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

pub fn format_datetime_ms(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .format(DATETIME_FORMAT)
        .to_string()
}

impl Org {
    /// The org for `seed` with `rows` rows per object, before any mutation.
    pub fn generate(seed: u64, rows: u64) -> Self {
        let objects = demo_objects();
        let data = objects
            .iter()
            .map(|_| ObjectRows {
                count: rows,
                overrides: HashMap::new(),
            })
            .collect();
        Self {
            seed,
            rows,
            objects,
            data,
            rounds: Vec::new(),
            hard_deletes: false,
        }
    }

    /// The org after replaying the given mutation rounds.
    pub fn replay(seed: u64, rows: u64, rounds: &[DateTime<Utc>]) -> Self {
        let mut org = Self::generate(seed, rows);
        for at in rounds {
            org.mutate(*at);
        }
        org
    }

    pub fn object(&self, name: &str) -> Option<(usize, &ObjectDef)> {
        self.objects
            .iter()
            .enumerate()
            .find(|(_, o)| o.name.eq_ignore_ascii_case(name))
    }

    fn object_salt(&self, object: usize) -> u64 {
        name_hash(self.objects[object].name)
    }

    /// The state of a row: its override, or the base state derived from the seed.
    pub fn row_state(&self, object: usize, index: u64) -> RowState {
        if let Some(state) = self.data[object].overrides.get(&index) {
            return *state;
        }
        let mut rng = Rng::new(&[self.seed, self.object_salt(object), index, 0xBA5E]);
        let modstamp_ms =
            history_end().timestamp_millis() - 1 - rng.below(HISTORY_MS as u64) as i64;
        let created_ms = modstamp_ms - rng.below(HISTORY_MS as u64 / 2) as i64;
        // History rows are never deleted on their own.
        let deleted = rng.chance(20) && !self.objects[object].append_only;
        RowState {
            version: 0,
            deleted,
            modstamp_ms,
            created_ms,
            purged: false,
        }
    }

    /// Every field of a row as Bulk CSV text (`None` for null; compound fields are `None`).
    pub fn row_values(&self, object: usize, index: u64) -> Vec<Option<String>> {
        let state = self.row_state(object, index);
        let def = &self.objects[object];
        let salt = self.object_salt(object);
        let mut values: Vec<Option<String>> = Vec::with_capacity(def.fields.len());
        for (position, field) in def.fields.iter().enumerate() {
            let version = if field.immutable { 0 } else { state.version };
            let mut rng = Rng::new(&[self.seed, salt, index, position as u64, version as u64]);
            let value = self.generate_value(field, &mut rng, object, index, &state, &values, def);
            values.push(value);
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As a real org: the fields it requires (Account's Name, every OwnerId, Contact's
    /// LastName, Opportunity's StageName and CloseDate, Lead's Company, ...) say so in their
    /// describe and are never null, before and after the org changes.
    #[test]
    fn required_fields_are_not_nillable_and_never_null() {
        let mut org = Org::generate(7, 300);
        org.add_object(numbered_object(0));
        let required = |object: &str, field: &str| {
            let (_, def) = org.object(object).unwrap();
            !def.field(field).unwrap().1.nillable
        };
        for (object, field) in [
            ("Account", "Name"),
            ("Account", "OwnerId"),
            ("Contact", "LastName"),
            ("Opportunity", "StageName"),
            ("Opportunity", "CloseDate"),
            ("Lead", "Company"),
            ("Lead", "Status"),
            ("Invoice__c", "Name"),
            ("Extra000__c", "Name"),
            ("Case", "IsClosed"),
        ] {
            assert!(required(object, field), "{object}.{field}");
        }
        assert!(
            !required("Account", "Phone"),
            "optional fields stay nillable"
        );
        org.mutate(history_end() + chrono::Duration::hours(1));
        for (object, def) in org.objects.iter().enumerate() {
            for index in 0..org.data[object].count {
                let values = org.row_values(object, index);
                for (position, field) in def.fields.iter().enumerate() {
                    if !field.nillable && !field.hidden && field.sf_type != "address" {
                        assert!(
                            values[position].is_some(),
                            "{}.{} is null in row {index}",
                            def.name,
                            field.name
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn ids_are_18_characters_and_round_trip() {
        for index in [0u64, 1, 61, 62, 123_456_789] {
            let id = salesforce_id("001", index);
            assert_eq!(id.len(), 18);
            assert_eq!(index_of_id("001", &id), Some(index));
        }
        assert_eq!(index_of_id("003", &salesforce_id("001", 5)), None);
    }

    #[test]
    fn the_same_seed_gives_the_same_org_and_another_seed_another() {
        let a = Org::generate(7, 100);
        let b = Org::generate(7, 100);
        let c = Org::generate(8, 100);
        assert_eq!(a.row_values(0, 42), b.row_values(0, 42));
        assert_ne!(a.row_values(0, 42), c.row_values(0, 42));
    }

    #[test]
    fn mutations_replay_exactly() {
        let at = Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0).unwrap();
        let mut live = Org::generate(3, 500);
        let report = live.mutate(at);
        let replayed = Org::replay(3, 500, &[at]);
        for (object, (_, counts)) in report.iter().enumerate() {
            assert_eq!(live.data[object].count, replayed.data[object].count);
            assert_eq!(live.data[object].count, 500 + counts.inserted);
            for index in 0..live.data[object].count {
                assert_eq!(
                    live.row_values(object, index),
                    replayed.row_values(object, index)
                );
            }
        }
        assert!(
            report
                .iter()
                .all(|(_, c)| c.updated > 0 && c.deleted > 0 && c.inserted > 0)
        );
    }

    #[test]
    fn some_base_rows_are_soft_deleted() {
        let org = Org::generate(1, 2000);
        let live = org.live_count(0);
        assert!(live < 2000 && live > 1900, "{live}");
    }
}

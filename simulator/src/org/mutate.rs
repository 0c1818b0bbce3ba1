//! How the org changes: mutation rounds (inserts, updates, soft and hard deletes), new and
//! removed fields, a cross-object formula.

use chrono::{DateTime, Utc};
use std::collections::HashMap;

use super::catalogue::{FieldDef, Gen, ObjectDef, field};
use super::rng::Rng;
use super::{MutationCounts, ObjectRows, Org, RowState};

impl Org {
    /// Contact gets `Account_Rating__c`, a formula showing its account's Rating: when an account
    /// changes, its contacts' formula values change while their SystemModstamp stays.
    pub fn add_cross_object_formula(&mut self) {
        let Some((index, def)) = self.object("Contact") else {
            return;
        };
        if def.field("Account_Rating__c").is_some() {
            return;
        }
        let lookup = Gen::Lookup {
            reference: "AccountId",
            object: "Account",
            field: "Rating",
        };
        self.objects[index].fields.push(FieldDef {
            calculated: true,
            formula: Some("Account.Rating"),
            ..field("Account_Rating__c", "string", lookup)
        });
    }

    /// Applies one mutation round at `at`: about 1% inserts, 2% updates and 0.5% deletes per
    /// object (at least one of each). Deterministic for (seed, round number).
    pub fn mutate(&mut self, at: DateTime<Utc>) -> Vec<(String, MutationCounts)> {
        let round = self.rounds.len() as u64 + 1;
        self.rounds.push(at);
        let stamp = at.timestamp_millis();
        let mut report = Vec::new();
        for object in 0..self.objects.len() {
            let salt = self.object_salt(object);
            let mut rng = Rng::new(&[self.seed, salt, round, 0x5EED]);
            let count = self.data[object].count;
            let mut counts = MutationCounts::default();
            let append_only = self.objects[object].append_only;
            let updates = if append_only { 0 } else { (count / 50).max(1) };
            for _ in 0..updates {
                let index = rng.below(count);
                let mut state = self.row_state(object, index);
                if state.deleted {
                    continue;
                }
                state.version += 1;
                state.modstamp_ms = stamp;
                self.data[object].overrides.insert(index, state);
                counts.updated += 1;
            }
            let deletes = if append_only { 0 } else { (count / 200).max(1) };
            for _ in 0..deletes {
                let index = rng.below(count);
                let mut state = self.row_state(object, index);
                if state.deleted {
                    continue;
                }
                state.deleted = true;
                state.modstamp_ms = stamp;
                self.data[object].overrides.insert(index, state);
                counts.deleted += 1;
            }
            let purges = if self.hard_deletes && !append_only {
                (count / 400).max(1)
            } else {
                0
            };
            for _ in 0..purges {
                let index = rng.below(count);
                if self.purge(object, index) {
                    counts.purged += 1;
                }
            }
            let inserts = (count / 100).max(1);
            for _ in 0..inserts {
                self.append_row(object, stamp);
                counts.inserted += 1;
            }
            report.push((self.objects[object].name.to_string(), counts));
        }
        report
    }

    /// A custom text field appears on the object at `at`, as an admin adds one: rows modified
    /// before stay null. Returns false for an unknown object or a field it already has.
    pub fn add_field(&mut self, object: &str, name: &'static str, at: DateTime<Utc>) -> bool {
        let Some((index, def)) = self.object(object) else {
            return false;
        };
        if def.field(name).is_some() {
            return false;
        }
        self.objects[index]
            .fields
            .push(field(name, "string", Gen::AddedAt(at.timestamp_millis())));
        true
    }

    /// Adds an object with the org's row count (the benchmark's wide object).
    pub fn add_object(&mut self, def: ObjectDef) {
        if self.object(def.name).is_none() {
            self.objects.push(def);
            self.data.push(ObjectRows {
                count: self.rows,
                overrides: HashMap::new(),
            });
        }
    }

    /// A field disappears from the object, as when an admin deletes it; queries naming it fail
    /// with INVALID_FIELD. Returns false for an unknown object or field.
    pub fn remove_field(&mut self, object: &str, name: &str) -> bool {
        let Some((index, def)) = self.object(object) else {
            return false;
        };
        let Some((position, _)) = def.field(name) else {
            return false;
        };
        self.objects[index].fields[position].hidden = true;
        true
    }

    /// Hard-deletes a row, live or in the recycle bin: it vanishes from every query, queryAll
    /// too, and its SystemModstamp does not move (nothing is left to stamp). False if the row
    /// does not exist or is gone already.
    pub fn purge(&mut self, object: usize, index: u64) -> bool {
        if index >= self.data[object].count {
            return false;
        }
        let mut state = self.row_state(object, index);
        if state.purged {
            return false;
        }
        state.deleted = true;
        state.purged = true;
        self.data[object].overrides.insert(index, state);
        true
    }

    /// Updates `count` live rows of `object` at `at`, spread over its Ids; returns their Ids.
    /// Not a replayed round: an org restarted from its rounds does not have these changes.
    pub fn update_rows(&mut self, object: &str, count: u64, at: DateTime<Utc>) -> Vec<String> {
        self.spread(object, count, |org, position, index| {
            let mut state = org.row_state(position, index);
            if state.deleted {
                return false;
            }
            state.version += 1;
            state.modstamp_ms = at.timestamp_millis();
            org.data[position].overrides.insert(index, state);
            true
        })
    }

    /// Applies `change` to rows of `object` spread evenly over its Ids until it has changed
    /// `count` of them (it answers whether it changed the row); returns their Ids.
    pub(crate) fn spread(
        &mut self,
        object: &str,
        count: u64,
        mut change: impl FnMut(&mut Org, usize, u64) -> bool,
    ) -> Vec<String> {
        let Some((position, def)) = self.object(object) else {
            return Vec::new();
        };
        let prefix = def.key_prefix;
        let rows = self.data[position].count;
        let step = (rows / count.max(1)).max(1);
        let mut changed = Vec::new();
        let mut index = step / 2;
        while index < rows && (changed.len() as u64) < count {
            if change(self, position, index) {
                changed.push(super::salesforce_id(prefix, index));
            }
            index += step;
        }
        changed
    }

    /// Inserts a row of `object` stamped `modstamp` (created then too), as a transaction that
    /// commits after rows with newer stamps were read. Not a replayed round. `None` for an
    /// unknown object.
    pub fn insert_row(&mut self, object: &str, modstamp: DateTime<Utc>) -> Option<String> {
        let (position, def) = self.object(object)?;
        let prefix = def.key_prefix;
        let index = self.append_row(position, modstamp.timestamp_millis());
        Some(super::salesforce_id(prefix, index))
    }

    /// A new live row of `object`, created and stamped at `stamp_ms`; its index.
    fn append_row(&mut self, object: usize, stamp_ms: i64) -> u64 {
        let index = self.data[object].count;
        self.data[object].count += 1;
        self.data[object].overrides.insert(
            index,
            RowState {
                version: 0,
                deleted: false,
                modstamp_ms: stamp_ms,
                created_ms: stamp_ms,
                purged: false,
            },
        );
        index
    }

    /// Rows not deleted.
    pub fn live_count(&self, object: usize) -> u64 {
        (0..self.data[object].count)
            .filter(|&i| !self.row_state(object, i).deleted)
            .count() as u64
    }
}

//! A row's field values, generated from (seed, object, row, version).

use chrono::Duration;

use super::catalogue::{FieldDef, Gen, ObjectDef};
use super::ids::{index_of_id, salesforce_id};
use super::rng::Rng;
use super::words::{
    CITIES, COMPANY_SUFFIXES, COMPANY_WORDS, COUNTRIES, FIRST_NAMES, LAST_NAMES, STATES, STREETS,
    WORDS, paragraph,
};
use super::{Org, RowState, format_datetime_ms, history_end};

impl Org {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn generate_value(
        &self,
        field: &FieldDef,
        rng: &mut Rng,
        object: usize,
        index: u64,
        state: &RowState,
        earlier: &[Option<String>],
        def: &ObjectDef,
    ) -> Option<String> {
        // Optional fields are null now and then, as in real data.
        if field.nillable
            && !matches!(
                field.generator,
                Gen::Bool
                    | Gen::Address(_)
                    | Gen::ExpectedRevenue
                    | Gen::Lookup { .. }
                    | Gen::LastModifiedDate
                    | Gen::AutoNumber(_)
                    | Gen::Owner
            )
            && rng.chance(60)
        {
            return None;
        }
        let value = match field.generator {
            Gen::AddedAt(created_ms) if state.modstamp_ms < created_ms => return None,
            Gen::AddedAt(_) => format!("Added {}", rng.pick(WORDS)),
            Gen::Id => salesforce_id(def.key_prefix, index),
            Gen::IsDeleted => state.deleted.to_string(),
            Gen::CreatedDate => format_datetime_ms(state.created_ms),
            Gen::LastModifiedDate => format_datetime_ms(state.modstamp_ms - rng.below(2000) as i64),
            Gen::SystemModstamp => format_datetime_ms(state.modstamp_ms),
            Gen::Ref(prefix) => {
                // Drawn from the base rows, so inserts elsewhere never change this row.
                let _ = object;
                salesforce_id(prefix, rng.below(self.rows.max(1)))
            }
            Gen::Owner => salesforce_id("005", rng.below(25)),
            Gen::Company => format!("{} {}", rng.pick(COMPANY_WORDS), rng.pick(COMPANY_SUFFIXES)),
            Gen::FirstName => rng.pick(FIRST_NAMES).to_string(),
            Gen::LastName => rng.pick(LAST_NAMES).to_string(),
            Gen::FullName => format!("{} {}", rng.pick(FIRST_NAMES), rng.pick(LAST_NAMES)),
            Gen::Email => format!(
                "{}.{}{}@example.com",
                rng.pick(FIRST_NAMES).to_lowercase(),
                rng.pick(LAST_NAMES).to_lowercase().replace('\'', ""),
                rng.below(1000)
            ),
            Gen::Phone => format!("(555) {:03}-{:04}", rng.below(1000), rng.below(10000)),
            Gen::Url => format!(
                "https://www.{}.example.com",
                rng.pick(COMPANY_WORDS).to_lowercase()
            ),
            Gen::Street => {
                let number = rng.below(9999) + 1;
                let street = rng.pick(STREETS);
                if rng.chance(200) {
                    format!("{number} {street}\nSuite {}", rng.below(900) + 100)
                } else {
                    format!("{number} {street}")
                }
            }
            Gen::City => rng.pick(CITIES).to_string(),
            Gen::State => rng.pick(STATES).to_string(),
            Gen::Postal => format!("{:05}", rng.below(99999)),
            Gen::Country => rng.pick(COUNTRIES).to_string(),
            Gen::Latitude => format!("{:.6}", rng.below(180_000_000) as f64 / 1e6 - 90.0),
            Gen::Longitude => format!("{:.6}", rng.below(360_000_000) as f64 / 1e6 - 180.0),
            Gen::Picklist(values) => rng.pick(values).to_string(),
            Gen::Currency(max) => format!("{:.2}", rng.below(max * 100) as f64 / 100.0),
            Gen::Percent => (rng.below(21) * 5).to_string(),
            Gen::Int(max) => rng.below(max).to_string(),
            Gen::Bool => rng.chance(500).to_string(),
            Gen::Date => {
                let day =
                    history_end() - Duration::days(rng.below(1500) as i64) + Duration::days(365);
                day.format("%Y-%m-%d").to_string()
            }
            Gen::Sentence => {
                let words = 2 + rng.below(4);
                (0..words)
                    .map(|_| rng.pick(WORDS))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            Gen::Paragraph => paragraph(rng),
            Gen::Base64 => {
                use base64::Engine;
                let bytes: Vec<u8> = (0..24).map(|_| rng.next_u64() as u8).collect();
                base64::engine::general_purpose::STANDARD.encode(bytes)
            }
            Gen::AutoNumber(prefix) => format!("{prefix}{:08}", index + 1),
            Gen::ExpectedRevenue => {
                let amount = def
                    .field("Amount")
                    .and_then(|(i, _)| earlier.get(i).cloned().flatten());
                let probability = def
                    .field("Probability")
                    .and_then(|(i, _)| earlier.get(i).cloned().flatten());
                match (amount, probability) {
                    (Some(a), Some(p)) => {
                        let a: f64 = a.parse().unwrap_or(0.0);
                        let p: f64 = p.parse().unwrap_or(0.0);
                        format!("{:.2}", (a * p / 100.0 * 100.0).round() / 100.0)
                    }
                    _ => return None,
                }
            }
            Gen::Address(_) => return None,
            Gen::Lookup {
                reference,
                object: target,
                field: target_field,
            } => {
                let id = def
                    .field(reference)
                    .and_then(|(i, _)| earlier.get(i).cloned().flatten())?;
                let (target_index, target_def) = self.object(target)?;
                let row = index_of_id(target_def.key_prefix, &id)
                    .filter(|&row| row < self.data[target_index].count)?;
                let (position, _) = target_def.field(target_field)?;
                return self
                    .row_values(target_index, row)
                    .get(position)
                    .cloned()
                    .flatten();
            }
        };
        Some(value)
    }
}

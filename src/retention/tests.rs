//! The arithmetic vectors of issue 12's "How it is checked" list.

use jiff::civil::date;
use jiff::tz::TimeZone;

use super::*;

fn tz() -> TimeZone {
    TimeZone::get("Europe/Berlin").unwrap_or_else(|_| TimeZone::fixed(jiff::tz::offset(1)))
}

/// Unix seconds of a local date and hour.
fn at(y: i16, m: i8, d: i8, h: i8) -> i64 {
    date(y, m, d)
        .at(h, 0, 0, 0)
        .to_zoned(tz())
        .expect("valid local time")
        .timestamp()
        .as_second()
}

fn cand(generation: u64, start: i64, label: Option<&str>, priority: Option<i64>) -> Candidate {
    Candidate {
        generation,
        start,
        end: start + 600,
        label: label.map(str::to_owned),
        priority,
        pinned: false,
    }
}

fn kept(decisions: &[Decision]) -> Vec<u64> {
    let mut g: Vec<u64> = decisions
        .iter()
        .filter(|d| d.keep)
        .map(|d| d.generation)
        .collect();
    g.sort_unstable();
    g
}

/// Runs a schedule day by day like a nightly `backup` + `forget_after_backup`:
/// each due day adds a backup with its label, then the policy forgets.
fn run_days(policy: &Policy, days: impl Iterator<Item = i64>) -> Vec<Candidate> {
    let mut have: Vec<Candidate> = Vec::new();
    let mut generation = 0;
    for start in days {
        let now = jiff::Timestamp::from_second(start).expect("valid");
        let Due::Due { label, priority } = due(policy, now, &have, &tz()) else {
            continue;
        };
        generation += 1;
        have.push(Candidate {
            generation,
            start,
            end: start + 600,
            label,
            priority,
            pinned: false,
        });
        let decisions = decide(policy, &have, &tz());
        have.retain(|c| {
            decisions
                .iter()
                .any(|d| d.generation == c.generation && d.keep)
        });
    }
    have
}

fn label_on(policy: &Policy, day: i64) -> Due {
    due(
        policy,
        jiff::Timestamp::from_second(day).expect("valid"),
        &[],
        &tz(),
    )
}

fn labelled(label: &str) -> Due {
    Due::Due {
        label: Some(label.to_owned()),
        priority: None,
    }
}

#[test]
fn cycle_vector_dates_to_slots() {
    let policy = Policy::Cycle(CycleRules::default());
    for ((y, m, d), label) in [
        ((2024, 1, 1), "slot-0-FULL"),
        ((2024, 1, 7), "slot-6-DIFF"),
        ((2024, 1, 8), "slot-7-FULL"),
        ((2024, 1, 15), "slot-0-FULL"),
        ((2024, 12, 31), "slot-1-DIFF"),
        ((2025, 1, 1), "slot-0-FULL"),
    ] {
        assert_eq!(
            label_on(&policy, at(y, m, d, 3)),
            labelled(label),
            "{y}-{m}-{d}"
        );
    }
}

#[test]
fn cycle_forgets_the_older_backup_of_a_slot_and_never_keeps_more_than_14() {
    let policy = Policy::Cycle(CycleRules::default());
    let mut have = Vec::new();
    let days = (0..400).map(|i| at(2024, 1, 1, 3) + i * DAY);
    for (i, start) in days.enumerate() {
        let now = jiff::Timestamp::from_second(start).expect("valid");
        let Due::Due { label, .. } = due(&policy, now, &have, &tz()) else {
            panic!("frequency 1 is due every day");
        };
        let generation = i as u64 + 1;
        have.push(Candidate {
            label,
            ..cand(generation, start, None, None)
        });
        let decisions = decide(&policy, &have, &tz());
        if start == at(2024, 1, 15, 3) {
            let first = decisions
                .iter()
                .find(|d| d.generation == 1)
                .expect("decided");
            assert!(!first.keep);
            assert_eq!(first.reasons, ["slot 0 has a newer backup (generation 15)"]);
        }
        have.retain(|c| {
            decisions
                .iter()
                .any(|d| d.generation == c.generation && d.keep)
        });
        assert!(have.len() <= 14, "{} kept", have.len());
    }
    assert_eq!(have.len(), 14);
}

#[test]
fn cycle_frequency_2_phase_1_is_due_only_on_odd_days() {
    let policy = Policy::Cycle(CycleRules {
        frequency: 2,
        phase: 1,
        ..CycleRules::default()
    });
    for n in 0..366 {
        let due = label_on(&policy, at(2024, 1, 1, 12) + n * DAY);
        assert_eq!(matches!(due, Due::Due { .. }), n % 2 == 1, "day {n}");
    }
}

#[test]
fn cycle_already_done_when_the_slot_has_a_backup_today() {
    let policy = Policy::Cycle(CycleRules::default());
    let earlier = cand(1, at(2024, 1, 7, 1), Some("slot-6-DIFF"), None);
    let now = jiff::Timestamp::from_second(at(2024, 1, 7, 3)).expect("valid");
    assert_eq!(
        due(&policy, now, std::slice::from_ref(&earlier), &tz()),
        Due::AlreadyDone
    );
    // The same slot a rotation ago is not today's.
    let old = Candidate {
        start: at(2023, 12, 24, 1),
        ..earlier
    };
    assert_eq!(due(&policy, now, &[old], &tz()), labelled("slot-6-DIFF"));
}

#[test]
fn hanoi_vector_dates_to_slots() {
    let policy = Policy::Hanoi(HanoiRules::default());
    for ((y, m, d), label) in [
        ((2024, 1, 1), "disc-2"),
        ((2024, 1, 2), "disc-0"),
        ((2024, 1, 3), "disc-1"),
        ((2024, 1, 5), "disc-4"),
        ((2024, 1, 13), "disc-3"),
    ] {
        // Noon local is the same UTC day.
        assert_eq!(
            label_on(&policy, at(y, m, d, 12)),
            labelled(label),
            "{y}-{m}-{d}"
        );
    }
}

#[test]
fn hanoi_32_daily_runs_leave_5_the_oldest_8_to_16_days_old() {
    let policy = Policy::Hanoi(HanoiRules::default());
    for first in 0..16 {
        let start = at(2024, 1, 1, 12) + first * DAY;
        let have = run_days(&policy, (0..32).map(|i| start + i * DAY));
        assert_eq!(have.len(), 5, "starting day {first}");
        let last = start + 31 * DAY;
        let oldest = have.iter().map(|c| c.start).min().expect("some");
        let age = (last - oldest) / DAY;
        assert!(
            (8..=16).contains(&age),
            "oldest {age} days old, starting day {first}"
        );
    }
}

#[test]
fn hanoi_archive_oldest_keeps_every_slot_4_backup() {
    let policy = Policy::Hanoi(HanoiRules {
        archive_oldest: true,
        ..HanoiRules::default()
    });
    let start = at(2024, 1, 1, 12);
    let have = run_days(&policy, (0..64).map(|i| start + i * DAY));
    let slot4 = have
        .iter()
        .filter(|c| c.label.as_deref() == Some("disc-4"))
        .count();
    // 64 days hold 4 slot-4 days (every 16th).
    assert_eq!(slot4, 4);
    assert_eq!(have.len(), 4 + 4);
}

#[test]
fn tiers_labels_four_backups_on_one_day() {
    let policy = Policy::Tiers(TierRules::default());
    let mut have = Vec::new();
    let mut labels = Vec::new();
    for (i, h) in [1, 2, 3, 4].into_iter().enumerate() {
        let now = jiff::Timestamp::from_second(at(2024, 1, 7, h)).expect("valid");
        let Due::Due { label, priority } = due(&policy, now, &have, &tz()) else {
            panic!("tiers are always due");
        };
        labels.push((label.clone().expect("labelled"), priority));
        have.push(cand(
            i as u64 + 1,
            now.as_second(),
            label.as_deref(),
            priority,
        ));
    }
    assert_eq!(
        labels,
        [
            ("Monthly-2024-01".to_owned(), Some(40)),
            ("Weekly-2024-01".to_owned(), Some(20)),
            ("Daily-2024-01-07".to_owned(), Some(10)),
            ("Backup_2024-01-07_04:00:00".to_owned(), Some(0)),
        ]
    );
}

/// One backup a day for 60 days under the default tiers, nothing forgotten.
fn tiered_history() -> Vec<Candidate> {
    let policy = Policy::Tiers(TierRules::default());
    let mut have: Vec<Candidate> = Vec::new();
    for i in 0..60 {
        let now = jiff::Timestamp::from_second(at(2024, 1, 1, 3) + i * DAY).expect("valid");
        let Due::Due { label, priority } = due(&policy, now, &have, &tz()) else {
            panic!("tiers are always due");
        };
        have.push(cand(
            i as u64 + 1,
            now.as_second(),
            label.as_deref(),
            priority,
        ));
    }
    have
}

#[test]
fn tiers_a_daily_run_forgets_exactly_old_low_priority_backups() {
    let policy = Policy::Tiers(TierRules::default());
    let have = tiered_history();
    let newest = have.last().expect("some");
    assert_eq!(newest.priority, Some(10));
    let decisions = decide(&policy, &have, &tz());
    for c in &have {
        let d = decisions
            .iter()
            .find(|d| d.generation == c.generation)
            .expect("decided");
        let old = newest.end - c.end > 30 * DAY;
        let expect_forgotten = c.priority.is_some_and(|p| p <= 10) && old;
        assert_eq!(!d.keep, expect_forgotten, "{c:?}: {d:?}");
    }
    assert!(decisions.iter().any(|d| !d.keep));
    let weekly = decisions
        .iter()
        .find(|d| d.generation == 7)
        .expect("the first Weekly");
    assert_eq!(weekly.reasons, ["tier Weekly (priority 20, kept 180 days)"]);
}

#[test]
fn tiers_a_monthly_run_forgets_nothing() {
    let policy = Policy::Tiers(TierRules::default());
    let mut have = tiered_history();
    let start = at(2024, 3, 1, 3);
    let now = jiff::Timestamp::from_second(start).expect("valid");
    let Due::Due { label, priority } = due(&policy, now, &have, &tz()) else {
        panic!("tiers are always due");
    };
    assert_eq!(label.as_deref(), Some("Monthly-2024-03"));
    have.push(cand(61, start, label.as_deref(), priority));
    assert!(decide(&policy, &have, &tz()).iter().all(|d| d.keep));
}

fn daily_backups(from: i64, days: i64) -> Vec<Candidate> {
    (0..days)
        .map(|i| cand(i as u64 + 1, from + i * DAY, None, None))
        .collect()
}

fn dates_kept(have: &[Candidate], decisions: &[Decision]) -> Vec<String> {
    let mut dates: Vec<String> = kept(decisions)
        .into_iter()
        .filter_map(|g| have.iter().find(|c| c.generation == g))
        .map(|c| {
            jiff::Timestamp::from_second(c.start)
                .expect("valid")
                .to_zoned(tz())
                .strftime("%m-%d")
                .to_string()
        })
        .collect();
    dates.sort();
    dates
}

#[test]
fn keep_restic_vector_keeps_exactly_14() {
    let have = daily_backups(at(2024, 1, 11, 3), 60);
    assert_eq!(have.last().map(|c| c.start), Some(at(2024, 3, 10, 3)));
    let policy = Policy::Keep(KeepRules {
        daily: 7,
        weekly: 5,
        monthly: 12,
        ..KeepRules::default()
    });
    let decisions = decide(&policy, &have, &tz());
    assert_eq!(
        dates_kept(&have, &decisions),
        [
            "01-11", "01-31", "02-11", "02-18", "02-25", "02-29", "03-03", "03-04", "03-05",
            "03-06", "03-07", "03-08", "03-09", "03-10"
        ]
    );
    let reasons = |g: u64| {
        decisions
            .iter()
            .find(|d| d.generation == g)
            .map(|d| d.reasons.clone())
    };
    assert_eq!(
        reasons(1),
        Some(vec!["monthly 2024-01 (oldest)".to_owned()])
    );
    assert_eq!(
        reasons(60),
        Some(vec![
            "daily 2024-03-10".into(),
            "weekly 2024-W10".into(),
            "monthly 2024-03".into(),
            "latest".into()
        ])
    );
}

#[test]
fn keep_skips_a_gap_instead_of_counting_it() {
    // Backups on 01-01..01-05 and 01-20..01-22: daily 5 keeps the 3 latest and
    // then 2 from before the gap, the empty days counting for nothing.
    let mut have = daily_backups(at(2024, 1, 1, 3), 5);
    have.extend((0..3).map(|i| cand(10 + i as u64, at(2024, 1, 20, 3) + i * DAY, None, None)));
    let policy = Policy::Keep(KeepRules {
        daily: 5,
        ..KeepRules::default()
    });
    let decisions = decide(&policy, &have, &tz());
    assert_eq!(
        dates_kept(&have, &decisions),
        ["01-04", "01-05", "01-20", "01-21", "01-22"]
    );
}

#[test]
fn keep_last_within_and_all() {
    let have = daily_backups(at(2024, 1, 1, 3), 30);
    let keep = |rules: KeepRules| kept(&decide(&Policy::Keep(rules), &have, &tz())).len();
    assert_eq!(
        keep(KeepRules {
            last: 3,
            ..KeepRules::default()
        }),
        3
    );
    assert_eq!(
        keep(KeepRules {
            daily: -1,
            ..KeepRules::default()
        }),
        30
    );
    let within = |s: &str| Some(s.parse::<KeepDuration>().expect("valid"));
    // Strictly after 14 days before the newest: 14 backups.
    assert_eq!(
        keep(KeepRules {
            within: within("14d"),
            ..KeepRules::default()
        }),
        14
    );
    assert_eq!(
        keep(KeepRules {
            within_weekly: within("1m"),
            ..KeepRules::default()
        }),
        5
    );
    // A zero duration is an unused rule, as in restic.
    assert!(
        KeepRules {
            within: within("0d"),
            ..KeepRules::default()
        }
        .is_empty()
    );
    // Unlike a count rule, a within_* rule does not also keep the oldest backup.
    assert_eq!(
        keep(KeepRules {
            within_monthly: within("2m"),
            ..KeepRules::default()
        }),
        1
    );
    assert_eq!(
        keep(KeepRules {
            monthly: 2,
            ..KeepRules::default()
        }),
        1 + 1
    );
}

#[test]
fn empty_keep_forgets_all_but_the_rails() {
    let mut have = daily_backups(at(2024, 1, 1, 3), 5);
    have[1].pinned = true;
    let policy = Policy::Keep(KeepRules::default());
    assert!(is_empty(&policy));
    assert!(!is_empty(&Policy::Cycle(CycleRules::default())));
    let decisions = decide(&policy, &have, &tz());
    assert_eq!(kept(&decisions), [2, 5]);
    let pinned = decisions
        .iter()
        .find(|d| d.generation == 2)
        .expect("decided");
    assert_eq!(pinned.reasons, ["pinned"]);
}

#[test]
fn scheduled_kinds_keep_backups_they_did_not_label() {
    let have = vec![
        cand(1, at(2024, 1, 1, 3), None, None),
        cand(2, at(2024, 1, 2, 3), Some("disc-0"), None),
        cand(3, at(2024, 1, 3, 3), Some("slot-0-FULL"), None),
        cand(4, at(2024, 1, 4, 3), Some("slot-0-FULL"), None),
    ];
    let decisions = decide(&Policy::Cycle(CycleRules::default()), &have, &tz());
    assert_eq!(kept(&decisions), [1, 2, 4]);
    let d = decisions
        .iter()
        .find(|d| d.generation == 2)
        .expect("decided");
    assert_eq!(d.reasons, ["not labelled by this policy"]);
    let decisions = decide(&Policy::Tiers(TierRules::default()), &have, &tz());
    assert_eq!(kept(&decisions), [1, 2, 3, 4]);
}

#[test]
fn durations_parse_like_restic() {
    let d: KeepDuration = "1y2m3d4h".parse().expect("valid");
    assert_eq!(
        d,
        KeepDuration {
            years: 1,
            months: 2,
            days: 3,
            hours: 4
        }
    );
    assert_eq!(d.to_string(), "1y2m3d4h");
    for bad in ["", "14", "d", "3w", "1.5d", "-1d", "14 d"] {
        assert!(bad.parse::<KeepDuration>().is_err(), "{bad:?}");
    }
}

#[test]
fn hanoi_frequency_and_already_done() {
    let policy = Policy::Hanoi(HanoiRules {
        frequency: 2,
        ..HanoiRules::default()
    });
    // 2024-01-01 is epoch day 19723 (odd): not due with frequency 2.
    assert_eq!(label_on(&policy, at(2024, 1, 1, 12)), Due::NotDue);
    let now = at(2024, 1, 2, 12);
    let Due::Due { label, .. } = label_on(&policy, now) else {
        panic!("an even epoch day is due");
    };
    let made = cand(1, now - 3600, label.as_deref(), None);
    let t = jiff::Timestamp::from_second(now).expect("valid");
    assert_eq!(due(&policy, t, &[made], &tz()), Due::AlreadyDone);
}

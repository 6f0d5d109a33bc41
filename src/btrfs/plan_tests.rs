//! The planner's vectors: btrsend's own test (`btrsend.rkt`, `logic-tests`,
//! third block) call by call, the same schedule called every day, and the
//! deviation. The expected tables were derived by hand from btrsend's
//! rules (see each test); the code under test never produced them.

use jiff::ToSpan;
use jiff::civil::Date;

use super::*;

fn d(s: &str) -> Date {
    s.parse().unwrap()
}

/// A store of members as btrsend's database would hold them: each call
/// forgets what the plan says, then records the stream it sent.
#[derive(Default)]
struct Store {
    members: Vec<Member>,
}

impl Store {
    fn call(&mut self, date: &str, schedule: &Schedule) -> Plan {
        let date = d(date);
        let p = plan(&self.members, date, schedule);
        self.members.retain(|m| !p.forget.contains(&m.date));
        if let Some(kind) = p.send {
            self.members.push(Member { date, kind });
        }
        p
    }

    /// A call that must send `line` (`""`, `"c"`, `"i DATE"`) and forget
    /// nothing.
    fn expect(&mut self, date: &str, line: &str) {
        let p = self.call(date, &Schedule::default());
        assert_eq!(p.line().trim_end(), line, "plan line on {date}");
        assert!(p.forget.is_empty(), "nothing forgotten on {date}: {p:?}");
        assert!(!p.complete_instead);
    }
}

/// btrsend's test, call for call. btrsend checks the plan, then records the
/// stream, so each date is one `call` here. Between the checks btrsend
/// also plans 01-01 again (nothing: already backed up), 01-02 and 01-08
/// (nothing: not a backup day).
#[test]
fn btrsend_test_vectors() {
    let mut s = Store::default();
    // Root 1: an empty store sends complete.
    s.expect("2000-01-01", "c");
    s.expect("2000-01-01", "");
    s.expect("2000-01-02", "");
    // Child of 1.
    s.expect("2000-01-07", "i 2000-01-01");
    s.expect("2000-01-08", "");
    // Children 2..11: each against the previous due day.
    let chain1 = [
        ("2000-01-14", "2000-01-07"),
        ("2000-01-21", "2000-01-14"),
        ("2000-02-01", "2000-01-21"),
        ("2000-02-07", "2000-02-01"),
        ("2000-02-14", "2000-02-07"),
        ("2000-02-21", "2000-02-14"),
        ("2000-03-01", "2000-02-21"),
        ("2000-03-07", "2000-03-01"),
        ("2000-03-14", "2000-03-07"),
        ("2000-03-21", "2000-03-14"),
    ];
    for (date, parent) in chain1 {
        s.expect(date, &format!("i {parent}"));
    }
    // The chain is one c and eleven i: the next stream starts chain 2.
    s.expect("2000-04-01", "c");
    // Chain 2's first ten incrementals.
    let chain2 = [
        ("2000-04-07", "2000-04-01"),
        ("2000-04-14", "2000-04-07"),
        ("2000-04-21", "2000-04-14"),
        ("2000-05-01", "2000-04-21"),
        ("2000-05-07", "2000-05-01"),
        ("2000-05-14", "2000-05-07"),
        ("2000-05-21", "2000-05-14"),
        ("2000-06-01", "2000-05-21"),
        ("2000-06-07", "2000-06-01"),
        ("2000-06-14", "2000-06-07"),
    ];
    for (date, parent) in chain2 {
        s.expect(date, &format!("i {parent}"));
    }
    // 06-21 - 90 days = 03-23 (2000 is a leap year), and chain 1's newest
    // member, 03-21, is on or before it: chain 1 (12 members) is forgotten
    // ("delete before 03-21"), while chain 2 gets its eleventh incremental.
    let p = s.call("2000-06-21", &Schedule::default());
    assert_eq!(p.line(), "i 2000-06-14\n");
    let mut forgotten = vec![d("2000-01-01"), d("2000-01-07")];
    forgotten.extend(chain1.iter().map(|(date, _)| d(date)));
    assert_eq!(p.forget, forgotten);
    assert_eq!(p.forget.len(), 12);
    assert!(!p.complete_instead);
    // Chain 2 is full: complete on 07-01, the start of chain 3.
    s.expect("2000-07-01", "c");
    assert_eq!(s.members.len(), 13, "chain 2 (12) and chain 3 (1)");
}

/// The same schedule called every day from 2000-01-01. The first chain's
/// newest member is 03-21, and 03-21 + 90 days = 06-19 (10 days left in
/// March, 30 in April, 31 in May, 19 in June): it goes on 06-19, two days
/// earlier than in btrsend's test, which only calls on backup days. Chain 2
/// (04-01 .. 06-21) goes on 06-21 + 90 = 09-19 (9 + 31 + 31 + 19); chain 3
/// starts on 07-01 and is full after 09-21, so 10-01 starts chain 4.
#[test]
fn called_every_day() {
    let expected = "\
2000-01-01 c
2000-01-07 i 2000-01-01
2000-01-14 i 2000-01-07
2000-01-21 i 2000-01-14
2000-02-01 i 2000-01-21
2000-02-07 i 2000-02-01
2000-02-14 i 2000-02-07
2000-02-21 i 2000-02-14
2000-03-01 i 2000-02-21
2000-03-07 i 2000-03-01
2000-03-14 i 2000-03-07
2000-03-21 i 2000-03-14
2000-04-01 c
2000-04-07 i 2000-04-01
2000-04-14 i 2000-04-07
2000-04-21 i 2000-04-14
2000-05-01 i 2000-04-21
2000-05-07 i 2000-05-01
2000-05-14 i 2000-05-07
2000-05-21 i 2000-05-14
2000-06-01 i 2000-05-21
2000-06-07 i 2000-06-01
2000-06-14 i 2000-06-07
2000-06-19 forget 2000-01-01..2000-03-21 (12)
2000-06-21 i 2000-06-14
2000-07-01 c
2000-07-07 i 2000-07-01
2000-07-14 i 2000-07-07
2000-07-21 i 2000-07-14
2000-08-01 i 2000-07-21
2000-08-07 i 2000-08-01
2000-08-14 i 2000-08-07
2000-08-21 i 2000-08-14
2000-09-01 i 2000-08-21
2000-09-07 i 2000-09-01
2000-09-14 i 2000-09-07
2000-09-19 forget 2000-04-01..2000-06-21 (12)
2000-09-21 i 2000-09-14
2000-10-01 c
";
    let mut s = Store::default();
    let mut log = String::new();
    let mut date = d("2000-01-01");
    while date <= d("2000-10-01") {
        let p = s.call(&date.to_string(), &Schedule::default());
        assert!(!p.complete_instead);
        if let (Some(first), Some(last)) = (p.forget.first(), p.forget.last()) {
            log += &format!("{date} forget {first}..{last} ({})\n", p.forget.len());
        }
        if p.send.is_some() {
            log += &format!("{date} {}", p.line());
        }
        date = date.checked_add(1.day()).unwrap();
    }
    assert_eq!(log, expected);
}

/// An empty store sends complete on any day (btrsend's `(empty? backups)`),
/// and a date already recorded sends nothing.
#[test]
fn first_stream_on_any_day() {
    let mut s = Store::default();
    s.expect("2000-01-03", "c");
    s.expect("2000-01-03", "");
    s.expect("2000-01-04", "");
    s.expect("2000-01-07", "i 2000-01-03");
}

/// The deviation: the only chain expires on a due day. btrsend would
/// delete it and still emit `i 2000-01-01`; the plan is `c`.
#[test]
fn only_chain_expiring_on_a_due_day_sends_complete() {
    let mut s = Store::default();
    s.expect("2000-01-01", "c");
    // Not called for 104 days; 04-14 - 90 days = 01-15.
    let p = s.call("2000-04-14", &Schedule::default());
    assert_eq!(p.line(), "c\n");
    assert_eq!(p.forget, vec![d("2000-01-01")]);
    assert!(p.complete_instead);
    assert_eq!(
        s.members,
        vec![Member {
            date: d("2000-04-14"),
            kind: Kind::Complete
        }]
    );
}

/// The only chain expiring on a day that is not due: it is forgotten and
/// nothing is sent (as btrsend); the next call finds nothing recorded and
/// sends complete, whatever the day.
#[test]
fn only_chain_expiring_on_another_day() {
    let mut s = Store::default();
    s.expect("2000-01-01", "c");
    s.expect("2000-01-07", "i 2000-01-01");
    // 04-06 - 90 days = 01-07.
    let p = s.call("2000-04-06", &Schedule::default());
    assert_eq!(p.line(), "");
    assert_eq!(p.forget, vec![d("2000-01-01"), d("2000-01-07")]);
    assert!(!p.complete_instead);
    s.expect("2000-04-08", "c");
}

/// A day before the lifetime ends keeps the chain: "≤ D - lifetime".
#[test]
fn expiry_boundary() {
    let members = [Member {
        date: d("2000-01-01"),
        kind: Kind::Complete,
    }];
    let schedule = Schedule::default();
    // 2000-03-31 - 90 days = 2000-01-01.
    assert_eq!(
        plan(&members, d("2000-03-30"), &schedule).forget,
        Vec::<Date>::new()
    );
    assert_eq!(
        plan(&members, d("2000-03-31"), &schedule).forget,
        vec![d("2000-01-01")]
    );
}

/// Other schedules: `max_incrementals: 0` makes every stream complete;
/// `backup_days` decides the due days; members may come in any order.
#[test]
fn custom_schedules() {
    let every_c = Schedule {
        backup_days: vec![15],
        max_incrementals: 0,
        chain_lifetime_days: 30,
    };
    let mut s = Store::default();
    assert_eq!(s.call("2000-01-15", &every_c).line(), "c\n");
    assert_eq!(s.call("2000-01-16", &every_c).line(), "");
    let p = s.call("2000-02-15", &every_c);
    assert_eq!(p.line(), "c\n");
    // 02-15 - 30 days = 01-16: the 01-15 chain goes.
    assert_eq!(p.forget, vec![d("2000-01-15")]);

    let two = Schedule {
        backup_days: vec![1, 2, 3, 4, 5],
        max_incrementals: 2,
        chain_lifetime_days: 365,
    };
    let mut s = Store::default();
    let lines: Vec<String> = ["2000-01-01", "2000-01-02", "2000-01-03", "2000-01-04"]
        .iter()
        .map(|date| s.call(date, &two).line())
        .collect();
    assert_eq!(lines, ["c\n", "i 2000-01-01\n", "i 2000-01-02\n", "c\n"]);
    // Recorded order does not matter.
    let mut reversed = s.members.clone();
    reversed.reverse();
    assert_eq!(
        plan(&reversed, d("2000-01-05"), &two),
        plan(&s.members, d("2000-01-05"), &two)
    );
}

#[test]
fn plan_line_formats() {
    let plan_of = |send| Plan {
        send,
        forget: Vec::new(),
        complete_instead: false,
    };
    assert_eq!(plan_of(None).line(), "");
    assert_eq!(plan_of(Some(Kind::Complete)).line(), "c\n");
    assert_eq!(
        plan_of(Some(Kind::Incremental {
            parent: d("0999-02-03")
        }))
        .line(),
        "i 0999-02-03\n"
    );
}

/// The plan line's text reads back (the stream index stores it); dates
/// are exactly `YYYY-MM-DD`.
#[test]
fn plan_texts_and_dates_read_back() {
    for kind in [
        Kind::Complete,
        Kind::Incremental {
            parent: d("2000-01-01"),
        },
    ] {
        assert_eq!(Kind::parse(&kind.to_string()), Some(kind));
    }
    for bad in [
        "",
        "C",
        "c ",
        "i",
        "i 2000-1-1",
        "i  2000-01-01",
        "x 2000-01-01",
    ] {
        assert_eq!(Kind::parse(bad), None, "{bad:?}");
    }
    assert_eq!(parse_date("2000-02-29"), Some(d("2000-02-29")));
    for bad in [
        "2000-02-30",
        "2000-1-07",
        "20000-01-07",
        "2000-01-07T00:00",
        " 2000-01-07",
    ] {
        assert_eq!(parse_date(bad), None, "{bad:?}");
    }
    assert_eq!(
        Member::parse("2000-01-07", "i 2000-01-01"),
        Some(Member {
            date: d("2000-01-07"),
            kind: Kind::Incremental {
                parent: d("2000-01-01")
            }
        })
    );
}

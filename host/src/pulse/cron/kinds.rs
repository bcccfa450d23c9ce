//! The six fields of a cron expression as users write them: their bounds,
//! the names accepted in place of numbers, and how a mistake is explained.

/// The six fields, in the order a six-field expression writes them; the
/// discriminant is the field's position (seconds first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    /// Seconds, 0-59 (only in six-field expressions).
    Second,
    /// Minutes, 0-59.
    Minute,
    /// Hours, 0-23.
    Hour,
    /// Day of the month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or JAN-DEC.
    Month,
    /// Day of the week, 0-7 (0 and 7 are Sunday) or SUN-SAT.
    DayOfWeek,
}

/// The bounds and names of one field, as users write it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Kind {
    /// Which field this is; its position in a six-field expression.
    pub field: Field,
    /// The field's name in messages, such as "day-of-month".
    pub name: &'static str,
    /// The least value.
    pub min: u32,
    /// The greatest value.
    pub max: u32,
    /// Names accepted in place of numbers; index 0 stands for `min`.
    pub names: &'static [&'static str],
    /// Full names accepted too, because stored expressions may use them.
    pub long_names: &'static [&'static str],
    /// What a value of this field is called when one is not recognised.
    pub noun: &'static str,
    /// How to write a valid value, closing messages about one.
    pub hint: &'static str,
}

/// The seconds field, 0-59.
pub(super) const SECOND: Kind = Kind {
    field: Field::Second,
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    long_names: &[],
    noun: "a number",
    hint: "use 0-59",
};
/// The minutes field, 0-59.
pub(super) const MINUTE: Kind = Kind {
    field: Field::Minute,
    name: "minute",
    hint: "use 0-59",
    ..SECOND
};
/// The hours field, 0-23.
pub(super) const HOUR: Kind = Kind {
    field: Field::Hour,
    name: "hour",
    max: 23,
    hint: "use 0-23",
    ..SECOND
};
/// The day-of-month field, 1-31.
pub(super) const DAY_OF_MONTH: Kind = Kind {
    field: Field::DayOfMonth,
    name: "day-of-month",
    min: 1,
    max: 31,
    hint: "use 1-31",
    ..SECOND
};
/// The month field, 1-12 or names.
pub(super) const MONTH: Kind = Kind {
    field: Field::Month,
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
    long_names: &MONTH_NAMES,
    noun: "a month",
    hint: "use 1-12 or JAN-DEC",
};
/// The day-of-week field, 0-7 (Sunday twice) or names.
pub(super) const DAY_OF_WEEK: Kind = Kind {
    field: Field::DayOfWeek,
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
    long_names: &[],
    noun: "a day",
    hint: "use 0-7 (0 and 7 are Sunday) or SUN-SAT",
};

/// The months' full names, accepted in expressions and used in messages.
pub(super) const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

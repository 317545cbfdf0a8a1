//! Branch conditions: `inputs.n > 10 and (prep.ok == true or inputs.mode != "fast")`.
//!
//! A condition compares workflow inputs, upstream outputs and literals with `==, !=, <, <=, >, >=` and
//! combines comparisons with `and` / `or` (`and` binds tighter; parentheses group). It is parsed and
//! type-checked at registration, and evaluated by the state machine when the branch node's inputs are done.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::types::{LiteralType, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CompareOp {
    fn symbol(&self) -> &'static str {
        match self {
            CompareOp::Eq => "==",
            CompareOp::Ne => "!=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
        }
    }

    fn is_ordering(&self) -> bool {
        !matches!(self, CompareOp::Eq | CompareOp::Ne)
    }
}

/// A condition over operands of type `O`: `String` references as written, or resolved bindings once compiled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition<O> {
    Compare {
        left: Operand<O>,
        op: CompareOp,
        right: Operand<O>,
    },
    And(Box<Condition<O>>, Box<Condition<O>>),
    Or(Box<Condition<O>>, Box<Condition<O>>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operand<O> {
    /// `inputs.NAME` or `NODE.OUTPUT`.
    Ref(O),
    Literal(Value),
}

impl<O> Condition<O> {
    /// The same condition with every reference mapped (resolved at compile time, remapped when inlined).
    pub fn try_map<P, E>(&self, f: &mut dyn FnMut(&O) -> Result<P, E>) -> Result<Condition<P>, E> {
        let mut operand = |o: &Operand<O>| -> Result<Operand<P>, E> {
            Ok(match o {
                Operand::Ref(r) => Operand::Ref(f(r)?),
                Operand::Literal(v) => Operand::Literal(v.clone()),
            })
        };
        Ok(match self {
            Condition::Compare { left, op, right } => Condition::Compare {
                left: operand(left)?,
                op: *op,
                right: operand(right)?,
            },
            Condition::And(a, b) => Condition::And(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
            Condition::Or(a, b) => Condition::Or(Box::new(a.try_map(f)?), Box::new(b.try_map(f)?)),
        })
    }

    /// Every reference, left to right.
    pub fn refs(&self) -> Vec<&O> {
        let mut found = Vec::new();
        self.collect_refs(&mut found);
        found
    }

    fn collect_refs<'a>(&'a self, found: &mut Vec<&'a O>) {
        match self {
            Condition::Compare { left, right, .. } => {
                for operand in [left, right] {
                    if let Operand::Ref(r) = operand {
                        found.push(r);
                    }
                }
            }
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.collect_refs(found);
                b.collect_refs(found);
            }
        }
    }

    /// Type-checks every comparison given the type of each reference; the error names the comparison.
    pub fn check_types(&self, type_of: &dyn Fn(&O) -> LiteralType) -> Result<(), ConditionError>
    where
        O: fmt::Display,
    {
        match self {
            Condition::Compare { left, op, right } => {
                let operand_type = |o: &Operand<O>| match o {
                    Operand::Ref(r) => type_of(r),
                    Operand::Literal(v) => literal_type(v),
                };
                let (left_type, right_type) = (operand_type(left), operand_type(right));
                let described = format!("{left} {} {right}", op.symbol());
                let (l, r) = (unwrap_optional(&left_type), unwrap_optional(&right_type));
                let numeric = |t: &LiteralType| matches!(t, LiteralType::Integer | LiteralType::Float);
                let comparable = l == r || (numeric(l) && numeric(r));
                if !comparable {
                    return Err(ConditionError::Incomparable {
                        condition: described,
                        left: left_type,
                        right: right_type,
                    });
                }
                let ordered = numeric(l)
                    || matches!(
                        l,
                        LiteralType::String | LiteralType::Datetime | LiteralType::Duration
                    );
                let scalar = ordered || matches!(l, LiteralType::Boolean);
                if !scalar || (op.is_ordering() && !ordered) {
                    return Err(ConditionError::NotOrdered {
                        condition: described,
                        operand: left_type,
                        op: op.symbol(),
                    });
                }
                Ok(())
            }
            Condition::And(a, b) | Condition::Or(a, b) => {
                a.check_types(type_of)?;
                b.check_types(type_of)
            }
        }
    }

    /// Evaluates the condition; `value_of` resolves a reference (an error if it has no value yet).
    pub fn evaluate<E>(&self, value_of: &dyn Fn(&O) -> Result<Value, E>) -> Result<bool, E> {
        match self {
            Condition::Compare { left, op, right } => {
                let value = |o: &Operand<O>| match o {
                    Operand::Ref(r) => value_of(r),
                    Operand::Literal(v) => Ok(v.clone()),
                };
                let (left, right) = (value(left)?, value(right)?);
                let ordering = compare_values(&left, &right);
                Ok(match op {
                    CompareOp::Eq => ordering == Some(Ordering::Equal),
                    CompareOp::Ne => ordering != Some(Ordering::Equal),
                    CompareOp::Lt => ordering == Some(Ordering::Less),
                    CompareOp::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
                    CompareOp::Gt => ordering == Some(Ordering::Greater),
                    CompareOp::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
                })
            }
            Condition::And(a, b) => Ok(a.evaluate(value_of)? && b.evaluate(value_of)?),
            Condition::Or(a, b) => Ok(a.evaluate(value_of)? || b.evaluate(value_of)?),
        }
    }
}

fn unwrap_optional(t: &LiteralType) -> &LiteralType {
    match t {
        LiteralType::Optional(inner) => unwrap_optional(inner),
        other => other,
    }
}

fn literal_type(value: &Value) -> LiteralType {
    match value {
        Value::Integer(_) => LiteralType::Integer,
        Value::Float(_) => LiteralType::Float,
        Value::Boolean(_) => LiteralType::Boolean,
        _ => LiteralType::String,
    }
}

/// `None` when the values cannot be ordered (a missing optional value equals only another missing one).
fn compare_values(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::Integer(a), Value::Integer(b)) => Some(a.cmp(b)),
        (Value::Integer(a), Value::Float(b)) => (*a as f64).partial_cmp(b),
        (Value::Float(a), Value::Integer(b)) => a.partial_cmp(&(*b as f64)),
        (Value::Float(a), Value::Float(b)) => a.partial_cmp(b),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Boolean(a), Value::Boolean(b)) => Some(a.cmp(b)),
        (Value::Datetime(a), Value::Datetime(b)) => Some(a.cmp(b)),
        (Value::Duration { millis: a }, Value::Duration { millis: b }) => Some(a.cmp(b)),
        (Value::None, Value::None) => Some(Ordering::Equal),
        _ => None,
    }
}

impl<O: fmt::Display> fmt::Display for Operand<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operand::Ref(r) => write!(f, "{r}"),
            Operand::Literal(Value::String(s)) => write!(f, "{s:?}"),
            Operand::Literal(v) => write!(f, "{}", v.to_text()),
        }
    }
}

impl<O: fmt::Display> fmt::Display for Condition<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Compare { left, op, right } => write!(f, "{left} {} {right}", op.symbol()),
            Condition::And(a, b) => write!(f, "({a} and {b})"),
            Condition::Or(a, b) => write!(f, "({a} or {b})"),
        }
    }
}

/// Why a branch condition does not parse or type-check; the message quotes the condition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConditionError {
    #[error("condition {condition:?}: {problem}")]
    Syntax {
        condition: String,
        problem: SyntaxProblem,
    },
    #[error("condition {condition:?} compares {left} with {right}")]
    Incomparable {
        condition: String,
        left: LiteralType,
        right: LiteralType,
    },
    #[error("condition {condition:?}: {operand} cannot be compared with {op}")]
    NotOrdered {
        condition: String,
        operand: LiteralType,
        op: &'static str,
    },
}

/// Where the text of a condition stops making sense; `at` counts characters from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxProblem {
    #[error("unterminated string starting at character {at}")]
    UnterminatedString { at: usize },
    #[error("unexpected {found:?} at character {at}")]
    UnexpectedCharacter { found: char, at: usize },
    #[error("{word:?} is not a number")]
    NotANumber { word: String },
    #[error(
        "{word:?} is not understood; compare inputs.NAME, NODE.OUTPUT, numbers, \"strings\", true or false"
    )]
    NotUnderstood { word: String },
    #[error("a '(' is not closed")]
    Unclosed,
    #[error("expected a comparison (==, !=, <, <=, >, >=), found {found}")]
    ExpectedComparison { found: String },
    #[error("expected a comparison (==, !=, <, <=, >, >=) at the end")]
    ComparisonAtEnd,
    #[error("expected a value, found {found}")]
    ExpectedValue { found: String },
    #[error("expected a value at the end")]
    ValueAtEnd,
    #[error("unexpected {found} after a complete condition")]
    Trailing { found: String },
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ref(String),
    Literal(Value),
    Op(CompareOp),
    And,
    Or,
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, SyntaxProblem> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = match two.as_str() {
            "==" => Some((CompareOp::Eq, 2)),
            "!=" => Some((CompareOp::Ne, 2)),
            "<=" => Some((CompareOp::Le, 2)),
            ">=" => Some((CompareOp::Ge, 2)),
            _ if c == '<' => Some((CompareOp::Lt, 1)),
            _ if c == '>' => Some((CompareOp::Gt, 1)),
            _ => None,
        };
        if let Some((op, width)) = op {
            tokens.push(Token::Op(op));
            i += width;
            continue;
        }
        match c {
            '(' => tokens.push(Token::Open),
            ')' => tokens.push(Token::Close),
            '"' | '\'' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|&d| d == c)
                    .ok_or(SyntaxProblem::UnterminatedString { at: i + 1 })?;
                let literal: String = chars[i + 1..i + 1 + end].iter().collect();
                tokens.push(Token::Literal(Value::String(literal)));
                i += end + 2;
                continue;
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.' | '-' | '+'))
                {
                    i += 1;
                }
                if start == i {
                    return Err(SyntaxProblem::UnexpectedCharacter { found: c, at: i + 1 });
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(word_token(&word)?);
                continue;
            }
        }
        i += 1;
    }
    Ok(tokens)
}

fn word_token(word: &str) -> Result<Token, SyntaxProblem> {
    Ok(match word {
        "and" => Token::And,
        "or" => Token::Or,
        "true" => Token::Literal(Value::Boolean(true)),
        "false" => Token::Literal(Value::Boolean(false)),
        _ if word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') => {
            if let Ok(integer) = word.parse::<i64>() {
                Token::Literal(Value::Integer(integer))
            } else {
                match word.parse::<f64>() {
                    Ok(float) if float.is_finite() => Token::Literal(Value::Float(float)),
                    _ => {
                        return Err(SyntaxProblem::NotANumber {
                            word: word.to_string(),
                        })
                    }
                }
            }
        }
        _ => match word.split_once('.') {
            Some((scope, name)) if !scope.is_empty() && !name.is_empty() && !name.contains('.') => {
                Token::Ref(word.to_string())
            }
            _ => {
                return Err(SyntaxProblem::NotUnderstood {
                    word: word.to_string(),
                })
            }
        },
    })
}

/// Parses a condition as written in a spec; references stay `inputs.NAME` / `NODE.OUTPUT` strings.
pub fn parse_condition(text: &str) -> Result<Condition<String>, ConditionError> {
    let syntax = |problem| ConditionError::Syntax {
        condition: text.to_string(),
        problem,
    };
    let tokens = tokenize(text).map_err(syntax)?;
    let mut parser = Parser { tokens, at: 0 };
    let condition = parser.or().map_err(syntax)?;
    if let Some(extra) = parser.tokens.get(parser.at) {
        return Err(syntax(SyntaxProblem::Trailing {
            found: describe(extra),
        }));
    }
    Ok(condition)
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ref(r) => r.clone(),
        Token::Literal(v) => v.to_text(),
        Token::Op(op) => op.symbol().to_string(),
        Token::And => "and".to_string(),
        Token::Or => "or".to_string(),
        Token::Open => "(".to_string(),
        Token::Close => ")".to_string(),
    }
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn or(&mut self) -> Result<Condition<String>, SyntaxProblem> {
        let mut left = self.and()?;
        while self.tokens.get(self.at) == Some(&Token::Or) {
            self.at += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition<String>, SyntaxProblem> {
        let mut left = self.atom()?;
        while self.tokens.get(self.at) == Some(&Token::And) {
            self.at += 1;
            left = Condition::And(Box::new(left), Box::new(self.atom()?));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Condition<String>, SyntaxProblem> {
        if self.tokens.get(self.at) == Some(&Token::Open) {
            self.at += 1;
            let inner = self.or()?;
            return match self.next() {
                Some(Token::Close) => Ok(inner),
                _ => Err(SyntaxProblem::Unclosed),
            };
        }
        let left = self.operand()?;
        let op = match self.next() {
            Some(Token::Op(op)) => op,
            Some(other) => {
                return Err(SyntaxProblem::ExpectedComparison {
                    found: describe(&other),
                })
            }
            None => return Err(SyntaxProblem::ComparisonAtEnd),
        };
        let right = self.operand()?;
        Ok(Condition::Compare { left, op, right })
    }

    fn operand(&mut self) -> Result<Operand<String>, SyntaxProblem> {
        match self.next() {
            Some(Token::Ref(r)) => Ok(Operand::Ref(r)),
            Some(Token::Literal(v)) => Ok(Operand::Literal(v)),
            Some(other) => Err(SyntaxProblem::ExpectedValue {
                found: describe(&other),
            }),
            None => Err(SyntaxProblem::ValueAtEnd),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, n: i64, mode: &str) -> bool {
        let condition = parse_condition(text).unwrap();
        condition
            .evaluate(&|r: &String| match r.as_str() {
                "inputs.n" => Ok(Value::Integer(n)),
                "inputs.mode" => Ok(Value::String(mode.to_string())),
                other => Err(format!("no {other}")),
            })
            .unwrap()
    }

    #[test]
    fn comparisons_combine_with_and_binding_tighter_than_or() {
        assert!(eval("inputs.n > 10", 11, ""));
        assert!(!eval("inputs.n > 10", 10, ""));
        assert!(eval("inputs.n >= 10 and inputs.mode == 'fast'", 10, "fast"));
        assert!(eval(
            "inputs.n < 0 or inputs.n == 5 and inputs.mode != \"x\"",
            5,
            "y"
        ));
        assert!(!eval(
            "(inputs.n < 0 or inputs.n == 5) and inputs.mode != 'y'",
            5,
            "y"
        ));
        assert!(eval("inputs.n <= 2.5", 2, ""));
    }

    #[test]
    fn malformed_conditions_say_what_is_wrong() {
        for (text, expected) in [
            ("inputs.n >", "expected a value at the end"),
            ("inputs.n 3", "expected a comparison"),
            ("(inputs.n > 3", "not closed"),
            ("inputs.n > 3 inputs.m", "unexpected inputs.m"),
            ("n > 3", "is not understood"),
            ("inputs.s == 'abc", "unterminated string"),
        ] {
            let error = parse_condition(text).unwrap_err();
            assert!(error.to_string().contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn type_checks_name_the_comparison() {
        let types = |r: &String| match r.as_str() {
            "inputs.n" => LiteralType::Integer,
            "inputs.flag" => LiteralType::Boolean,
            _ => LiteralType::String,
        };
        assert!(parse_condition("inputs.n > 1.5")
            .unwrap()
            .check_types(&types)
            .is_ok());
        let error = parse_condition("inputs.n == 'x'")
            .unwrap()
            .check_types(&types)
            .unwrap_err();
        assert!(
            error.to_string().contains("compares integer with string"),
            "{error}"
        );
        let error = parse_condition("inputs.flag < true")
            .unwrap()
            .check_types(&types)
            .unwrap_err();
        assert!(error.to_string().contains("cannot be compared with <"), "{error}");
    }
}

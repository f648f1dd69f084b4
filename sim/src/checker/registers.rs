//! A map of compare-and-set registers (the full-stack simulation's register workload): each
//! key is one [`RegisterModel`], absent at first, and the history is checked key by key.

use super::history_files::{RegisterInput, RegisterModel, RegisterOutput};
use super::linearizability::{Model, Operation};
use std::collections::BTreeMap;

/// An operation on one register of the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyedInput {
    pub key: u32,
    pub op: RegisterInput,
}

pub struct RegistersModel;

impl Model for RegistersModel {
    type State = Option<u64>;
    type Input = KeyedInput;
    type Output = RegisterOutput;

    fn init() -> Self::State {
        None
    }

    fn step(
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State> {
        RegisterModel::step(state, &input.op, output)
    }

    fn partition(ops: &[Operation<Self::Input, Self::Output>]) -> Vec<Vec<usize>> {
        let mut by_key: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            by_key.entry(op.input.key).or_default().push(i);
        }
        by_key.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::linearizability::{Limits, Verdict, check_operations};

    fn op(
        client: u64,
        key: u32,
        input: RegisterInput,
        call: u64,
        output: Option<RegisterOutput>,
        ret: u64,
    ) -> Operation<KeyedInput, RegisterOutput> {
        Operation {
            client,
            input: KeyedInput { key, op: input },
            call,
            output,
            ret,
        }
    }

    #[test]
    fn keys_are_independent_and_a_stale_read_is_caught() {
        use RegisterInput::*;
        use RegisterOutput as O;
        let good = vec![
            op(0, 1, Write(5), 0, Some(O::Write), 10),
            op(1, 2, Write(7), 1, Some(O::Write), 2),
            op(1, 1, Read, 11, Some(O::Read(Some(5))), 12),
            op(
                2,
                2,
                Cas { from: 7, to: 8 },
                3,
                Some(O::Cas { ok: true }),
                4,
            ),
            op(2, 2, Read, 5, Some(O::Read(Some(8))), 6),
        ];
        assert_eq!(
            check_operations::<RegistersModel>(&good, Limits::default()),
            Verdict::Linearizable
        );
        let mut stale = good.clone();
        stale.push(op(3, 2, Read, 7, Some(O::Read(Some(7))), 8));
        assert!(matches!(
            check_operations::<RegistersModel>(&stale, Limits::default()),
            Verdict::NotLinearizable(_)
        ));
    }
}

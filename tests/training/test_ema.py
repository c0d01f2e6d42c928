"""EMA teacher: worked values after one and two steps, buffers averaged or copied, no grads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medref_cli.errors import MedrefError
from medref_cli.training.ema import EMATeacher


def tiny_model() -> nn.Sequential:
    model = nn.Sequential(nn.Linear(1, 1), nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(0.0)
    return model


def set_student(student: nn.Sequential) -> None:
    with torch.no_grad():
        student[0].weight.fill_(2.0)
        student[0].bias.fill_(1.0)
        student[1].running_mean.fill_(1.0)
        student[1].running_var.fill_(3.0)
        student[1].num_batches_tracked.fill_(5)


def test_one_step_worked_values():
    student = tiny_model()
    teacher = EMATeacher(student)  # teacher: weight 1, bias 0, running mean 0, var 1, batches 0
    set_student(student)
    teacher.update(student, momentum=0.9)
    linear, norm = teacher.model[0], teacher.model[1]
    assert linear.weight.item() == pytest.approx(0.9 * 1.0 + 0.1 * 2.0)  # 1.1
    assert linear.bias.item() == pytest.approx(0.9 * 0.0 + 0.1 * 1.0)  # 0.1
    assert norm.weight.item() == pytest.approx(1.0)  # BN affine weight: 1 in both
    assert norm.running_mean.item() == pytest.approx(0.1)  # 0.9 * 0 + 0.1 * 1
    assert norm.running_var.item() == pytest.approx(1.2)  # 0.9 * 1 + 0.1 * 3
    assert norm.num_batches_tracked.item() == 5  # integer buffer: copied
    assert norm.num_batches_tracked.dtype == torch.long


def test_two_steps_compound():
    student = tiny_model()
    teacher = EMATeacher(student)
    set_student(student)
    teacher.update(student, momentum=0.5)  # 0.5 * 1 + 0.5 * 2 = 1.5
    teacher.update(student, momentum=0.5)  # 0.5 * 1.5 + 0.5 * 2 = 1.75
    assert teacher.model[0].weight.item() == pytest.approx(1.75)
    teacher.update(student, momentum=1.0)  # m = 1 keeps the teacher
    assert teacher.model[0].weight.item() == pytest.approx(1.75)
    teacher.update(student, momentum=0.0)  # m = 0 copies the student
    assert teacher.model[0].weight.item() == pytest.approx(2.0)


def test_teacher_is_frozen_eval_and_gets_no_grads():
    student = tiny_model()
    teacher = EMATeacher(student)
    assert not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    x = torch.randn(4, 1)
    out = teacher(x)
    assert out.grad_fn is None
    loss = student(x).pow(2).sum() + teacher.model(x).sum()
    loss.backward()
    assert all(p.grad is None for p in teacher.model.parameters())
    assert student[0].weight.grad is not None
    student.train()
    teacher.update(student, 0.9)
    assert not teacher.model.training


def test_teacher_is_independent_of_student_storage():
    student = tiny_model()
    teacher = EMATeacher(student)
    with torch.no_grad():
        student[0].weight.fill_(7.0)
    assert teacher.model[0].weight.item() == 1.0


def test_frozen_student_parameters_are_left_alone():
    student = tiny_model()
    student[0].bias.requires_grad_(False)
    teacher = EMATeacher(student)
    set_student(student)
    teacher.update(student, 0.9)
    assert teacher.model[0].bias.item() == 0.0  # frozen in the student: not averaged
    assert teacher.model[0].weight.item() == pytest.approx(1.1)


def test_mismatched_architecture_and_bad_momentum_raise():
    teacher = EMATeacher(tiny_model())
    with pytest.raises(ValueError):
        teacher.update(nn.Sequential(nn.Linear(1, 1)), 0.9)
    with pytest.raises(MedrefError):
        teacher.update(tiny_model(), 1.5)


def test_state_dict_round_trip():
    student = tiny_model()
    teacher = EMATeacher(student)
    set_student(student)
    teacher.update(student, 0.9)
    state = teacher.state_dict()
    other = EMATeacher(tiny_model())
    other.load_state_dict(state)
    assert other.model[0].weight.item() == pytest.approx(1.1)

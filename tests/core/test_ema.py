import copy

import pytest
import torch
from torch import nn

from data2vec_plugin.modules.ema import EMATeacher, annealed_decay
from data2vec_plugin.modules.teacher_holder import TeacherHolderMixin


def test_schedule_hits_endpoints_and_is_linear():
    assert annealed_decay(0, 0.999, 0.9999, 100) == pytest.approx(0.999)
    assert annealed_decay(50, 0.999, 0.9999, 100) == pytest.approx(0.99945)
    assert annealed_decay(100, 0.999, 0.9999, 100) == pytest.approx(0.9999)
    assert annealed_decay(10_000, 0.999, 0.9999, 100) == pytest.approx(0.9999)
    assert annealed_decay(7, 0.9998, 0.9998, 100) == pytest.approx(0.9998)


def test_step_equals_formula_and_copy_keys_are_copied():
    student = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    teacher = EMATeacher(student, copy_keys=("1.",))
    before = {k: v.clone() for k, v in teacher.module.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    teacher.step(student, 0.9)
    s = student.state_dict()
    t = teacher.module.state_dict()
    torch.testing.assert_close(t["0.weight"], 0.9 * before["0.weight"] + 0.1 * s["0.weight"], rtol=0, atol=1e-7)
    torch.testing.assert_close(t["1.weight"], s["1.weight"], rtol=0, atol=0)
    assert not torch.equal(t["0.weight"], s["0.weight"])


def test_decay_one_freezes():
    student = nn.Linear(3, 3)
    teacher = EMATeacher(student)
    before = copy.deepcopy(teacher.module.state_dict())
    with torch.no_grad():
        student.weight.add_(1.0)
    teacher.step(student, 1.0)
    torch.testing.assert_close(teacher.module.state_dict()["weight"], before["weight"], rtol=0, atol=0)


def test_half_student_fp32_master():
    student = nn.Linear(8, 8)
    teacher = EMATeacher(student)
    master = teacher.module.weight.detach().clone()
    student.half()
    teacher.step(student, 0.99)
    assert teacher.module.weight.dtype == torch.float32
    expected = 0.99 * master + 0.01 * student.weight.float()
    torch.testing.assert_close(teacher.module.weight, expected, rtol=0, atol=1e-7)


class Holder(TeacherHolderMixin, nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 4)
        self.head = nn.Linear(4, 4)
        self.init_teacher("body", (), 0.5, 0.5, 10)


def test_holder_steps_once_per_update_and_roundtrips():
    m = Holder()
    m.observe_num_updates(0)
    with torch.no_grad():
        m.body.weight.add_(1.0)
    assert m.ema_step(1) is True
    assert m.ema_step(1) is False  # a second micro-batch of the same update must not step again
    m.observe_num_updates(1)
    after_one = m.teacher.module.weight.detach().clone()
    sd = m.state_dict()
    assert set(sd["_ema"]) == {"weight", "bias"} and sd["_ema"]["weight"].dtype == torch.float32
    assert all(not k.startswith("_teacher") for k in sd)
    m2 = Holder()
    m2.load_state_dict(sd)
    torch.testing.assert_close(m2.teacher.module.weight, after_one, rtol=0, atol=0)
    # teacher never in parameters / no gradients
    assert all(p is not m.teacher.module.weight for p in m.parameters())
    assert not m.teacher.module.weight.requires_grad


def test_missing_ema_resets_teacher_from_loaded_student():
    m = Holder()
    sd = {k: v for k, v in m.state_dict().items() if k != "_ema"}
    sd["body.weight"] = torch.full((4, 4), 3.0)
    m.load_state_dict(sd)
    torch.testing.assert_close(m.teacher.module.weight, torch.full((4, 4), 3.0))


def test_teacher_stays_fp32_after_half():
    m = Holder().half()
    assert m.body.weight.dtype == torch.float16
    assert m.teacher.module.weight.dtype == torch.float32

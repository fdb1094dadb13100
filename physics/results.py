"""The records of a validation: what each simulator saw, the verdict, the repair.

Everything here is a plain dataclass that ``dataclasses.asdict`` turns into validation.json
(units: metres, seconds, degrees; orientations [w, x, y, z]).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from exporters.ground import GroundPlan
from physics.config import ValidationConfig
from physics.joints import JointReport

Vec3 = tuple[float, float, float]
Quat = tuple[float, float, float, float]

# Issue codes. The first group makes an object unstable; the second flags a bad placement
# at t=0 (the object may still come to rest, but the scene as exported is not plausible).
DRIFT = "drift"
ROTATION = "rotation"
MOVING = "moving"
FELL_THROUGH_FLOOR = "fell_through_floor"
LEFT_SUPPORT = "left_support"
PENETRATION = "penetration"
BELOW_FLOOR = "below_floor"
FLOATING = "floating"
UNSTABLE_CODES = (DRIFT, ROTATION, MOVING, FELL_THROUGH_FLOOR, LEFT_SUPPORT)
PLACEMENT_CODES = (PENETRATION, BELOW_FLOOR, FLOATING)


@dataclass(frozen=True)
class Issue:
    code: str  # one of the codes above
    message: str  # for people: what, how much, the limit


@dataclass(frozen=True)
class BodyState:
    """One object at one instant, as a simulator sees it (geometric units: margins removed)."""

    position: Vec3  # object (link) frame, the pose convention of export.json
    orientation: Quat
    bottom_z: float  # lowest / highest world z of its collision hulls
    top_z: float
    penetration_m: float  # deepest overlap with any other body, >= 0
    support: tuple[str, ...]  # ids of the bodies it rests on (within contact tolerance, below it)
    gap_below_m: float | None  # distance to the nearest body below it (None: nothing below)


@dataclass(frozen=True)
class PenetratingPair:
    a: str
    b: str
    depth_m: float


@dataclass
class ObjectResult:
    id: str
    label: str
    start_position: Vec3
    start_orientation: Quat
    rest_position: Vec3
    rest_orientation: Quat
    contact_offset_m: float  # PyBullet: how far its hull padding lifts the object (the start is raised
    #   by it before stepping, see physics.pybullet_check); 0 in MuJoCo
    drift_m: float  # translation, start pose (+ contact offset) -> rest
    rotation_deg: float  # rotation, start pose -> rest
    height_change_m: float  # rest z - start z (+ contact offset) of the object frame
    penetration_start_m: float
    penetration_rest_m: float
    gap_below_start_m: float | None
    linear_speed: float  # m/s at the end
    angular_speed: float  # rad/s at the end
    settle_time_s: float | None  # from when on it stayed at rest; None: still moving at the end
    support_start: list[str]
    support_rest: list[str]
    floating: bool
    below_floor: bool
    fell_through_floor: bool
    left_support: bool
    stable: bool
    issues: list[Issue] = field(default_factory=list)

    @property
    def codes(self) -> list[str]:
        return [i.code for i in self.issues]


@dataclass
class SimulatorResult:
    simulator: str  # "pybullet" | "mujoco"
    timestep_s: float
    seconds: float
    steps: int
    wall_seconds: float  # of the stepping alone
    realtime_factor: float  # simulated seconds per wall second
    floor_z: float
    floor_source: str
    objects: list[ObjectResult]  # foreground objects; background ones are static
    penetrating_pairs_start: list[PenetratingPair]
    penetrating_pairs_rest: list[PenetratingPair]
    n_objects: int
    n_stable: int
    stable_share: float
    settle_time_s: float | None  # when the last object came to rest; None: some never did
    passed: bool
    failures: list[str]  # why the scene fails, for people

    def get(self, object_id: str) -> ObjectResult:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(object_id)


@dataclass
class ObjectAgreement:
    id: str
    pybullet_stable: bool
    mujoco_stable: bool
    pybullet_drift_m: float
    mujoco_drift_m: float
    pybullet_rotation_deg: float
    mujoco_rotation_deg: float
    position_difference_m: float  # between the two displacements start -> rest (contact offsets removed)
    rest_distance_m: float  # between the two rest positions as they are
    rotation_difference_deg: float  # between the two rest orientations
    drift_difference_m: float  # |drift in PyBullet - drift in MuJoCo|
    same_verdict: bool  # stable in both or unstable in both
    agree: bool


@dataclass
class Agreement:
    objects: list[ObjectAgreement]
    max_position_difference_m: float
    max_rotation_difference_deg: float
    share_agreeing: float
    same_scene_verdict: bool
    agree: bool


@dataclass
class ObjectMove:
    """What one repair round did to one object (only objects written back are listed)."""

    id: str
    label: str
    before_position: Vec3
    before_orientation: Quat
    after_position: Vec3
    after_orientation: Quat
    translation_m: float
    rotation_deg: float
    actions: list[str]  # e.g. "separated from mug_1 by 1.2 cm", "dropped 3.0 cm onto table"


@dataclass
class SettleIteration:
    index: int
    failing_before: list[str]  # ids flagged by the validation that started the round
    moves: list[ObjectMove]
    export_seconds: float
    passed_after: bool  # in both simulators
    simulators: list[str] = field(default_factory=list)  # the repair stages of the round: "pybullet", "mujoco"
    pybullet_passed: bool | None = None  # each simulator's verdict after the round
    mujoco_passed: bool | None = None  # (None: MuJoCo not run)


@dataclass
class UnresolvedObject:
    id: str
    label: str
    reasons: list[str]


@dataclass
class SettleResult:
    scene_dir: str
    export_dir: str
    initially_passed: bool
    initial_failures: list[str]
    iterations: list[SettleIteration]
    passed: bool
    unresolved: list[UnresolvedObject]
    warnings: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    format: str
    version: int
    scene: str
    export_dir: str
    config: ValidationConfig
    pybullet: SimulatorResult
    mujoco: SimulatorResult | None
    agreement: Agreement | None
    settle: SettleResult | None
    passed: bool
    failures: list[str]
    notes: list[str] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # name -> file name in the report dir
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase
    ground: GroundPlan | None = None  # the ground plane both simulators had (exporters/ground.py)
    joints: JointReport | None = None  # articulated objects' joints (physics.joints); None: the scene has none

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

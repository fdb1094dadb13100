"""Contact parameters: one intended value per contact, written so that PyBullet and MuJoCo
compute that same value from their own per-body / per-geom parameters.

What a contact should get (the material table, ``exporters/materials.py``, gives each label
the coefficients of its surface *against the usual supports*):

- sliding friction: the moving object's dynamic friction;
- torsional friction: ``TORSIONAL_FRICTION_M`` (torque limit per newton of normal force);
- rolling friction: ``ROLLING_FRICTION_M`` (likewise);
- restitution: both bodies' (see below: against a support, no visible bounce in either).

How each simulator combines the two bodies of a contact (read from their sources:
Bullet's ``btManifoldResult::calculateCombined*``, MuJoCo's "Contact parameters" rules):

========================  =============================================  ===========================================
quantity                  PyBullet (URDF ``<contact>``, per body)        MuJoCo (per geom)
========================  =============================================  ===========================================
sliding friction          product  f_a * f_b (clamped to 10)             max (geoms of equal ``priority``, as here)
torsional (spinning)      s_a * f_b + s_b * f_a                          max (needs condim >= 4)
rolling                   r_a * f_b + r_b * f_a                          max (needs condim 6)
restitution               product  e_a * e_b, only for impacts faster    ``solref`` damping ratio (``restitution_
                          than 0.2 m/s (restitutionVelocityThreshold)    dampratio``), solmix-weighted mean (equal
                                                                         weights here); always acting
========================  =============================================  ===========================================

So the values written are:

- PyBullet, moving object: lateral = its dynamic friction, spinning = ``TORSIONAL_FRICTION_M``,
  rolling = ``ROLLING_FRICTION_M``, restitution = its restitution. Static body (background
  object, ground plane): the neutral element of each friction combination (lateral 1,
  spinning 0, rolling 0; pybullet_data's own ``plane.urdf`` has lateral friction 1 for the
  same reason) and its own restitution. Before this, an object of friction 0.4 on a floor of
  0.5 slid at 0.2 in PyBullet and at 0.5 in MuJoCo.
- MuJoCo, moving object's geoms: friction = (its dynamic friction, TORSIONAL, ROLLING),
  ``condim`` 6 (before: 4, which silently dropped the rolling coefficient); static geoms:
  friction (0, 0, 0), the neutral element of MuJoCo's max. Every geom: ``solref`` =
  (``CONTACT_TIMECONST_S``, damping ratio of its own restitution), mixed as MuJoCo does.

Contact with a static body (the floor, the ground, background furniture: most contacts of
a resting scene) therefore has the object's sliding, torsional and rolling friction in both,
exactly. Restitution is the one value that is not the object's: the material table gives
supports restitution 0, PyBullet multiplies (no bounce off a support) and MuJoCo averages
the two damping ratios (a support is critically damped: an object of restitution 0.3
bounces off it with about 0.05). Neither bounces visibly, so they agree; the object's own
restitution is not used against supports on purpose: PyBullet applies restitution only to
impacts faster than 0.2 m/s, but a MuJoCo contact is always a spring, and an
under-damped one keeps a resting object rocking (a bunny of restitution 0.3 on the floor
still turned at 0.1 rad/s after 3 s with its own damping ratio: "moving" in the drop test).

Between two moving objects the rules cannot be made to agree per body: PyBullet multiplies
(0.4 on 0.4 gives 0.16; spinning 0.005 x (0.4 + 0.4); restitution 0.3 x 0.2), MuJoCo takes
the larger friction (0.4; 0.005) and the mean damping ratio. Neither can express the other's
rule, so the cross-check of ``hiscene validate`` is what catches a scene whose stability
depends on it.

Margins: PyBullet pads every convex hull by its collision margin (1 mm,
``physics.config.PYBULLET_HULL_MARGIN``), so bodies rest 2 mm apart; MuJoCo's ``margin`` and
``gap`` are 0 (geometric contact). Validation takes the padding out of its distances and
drift (``physics.pybullet_check``). Friction cones: both exact cones (PyBullet's implicit
cone friction is its default; the MJCF asks for ``cone="elliptic"`` with ``impratio`` 10,
which makes MuJoCo's soft friction nearly as hard as Coulomb's). Solver: PyBullet's fixed
step 1/240 s, 50 sequential-impulse iterations, split-impulse position correction (no
energy added when resolving overlaps); MuJoCo 2 ms, implicitfast integrator, Newton
solver, soft contacts (``solref`` time constant 10 ms, ``solimp`` 0.95..0.99 over 1 mm: an
object at rest sinks about 0.01 mm).
"""

from __future__ import annotations

from dataclasses import dataclass

from exporters.materials import Material

#: Torsional and rolling friction (m: torque limit per newton of normal force), for every
#: contact. MuJoCo's defaults for the two; PyBullet had 0.0001 for both (50x less torsion).
TORSIONAL_FRICTION_M = 0.005
ROLLING_FRICTION_M = 0.0001
CONTACT_TIMECONST_S = 0.01  # MuJoCo solref time constant, >= 2 x its timestep as MuJoCo advises
MUJOCO_CONDIM = 6  # normal, 2 sliding, torsional, 2 rolling


@dataclass(frozen=True)
class BulletContact:
    """PyBullet's ``<contact>`` values of one body."""

    lateral_friction: float
    spinning_friction: float
    rolling_friction: float
    restitution: float


def bullet_contact(material: Material, static: bool) -> BulletContact:
    """A static body's frictions are the neutral element of PyBullet's combinations."""
    if static:
        return BulletContact(lateral_friction=1.0, spinning_friction=0.0, rolling_friction=0.0,
                             restitution=material.restitution)
    return BulletContact(material.dynamic_friction, TORSIONAL_FRICTION_M, ROLLING_FRICTION_M, material.restitution)


def mujoco_friction(material: Material, static: bool) -> tuple[float, float, float]:
    """MJCF ``friction`` (sliding, torsional, rolling); a static geom's is the neutral element of MuJoCo's max."""
    if static:
        return (0.0, 0.0, 0.0)
    return (material.dynamic_friction, TORSIONAL_FRICTION_M, ROLLING_FRICTION_M)

"""One USD stage (``scene.usda``) of the whole scene, for Isaac Sim / Isaac Lab.

Layout (metres, Z up, kilograms)::

    /World                              Xform, defaultPrim
      PhysicsScene                      UsdPhysics.Scene, gravity (0, 0, -9.81)
      Objects/<id>                      Xform (translate, orient), RigidBodyAPI, MassAPI, labels
        visual                          Mesh: welded (closed) surface, st / displayColor
        collision/hull_000 ...          Mesh, CollisionAPI, convexHull, purpose guide
        Looks/material                  UsdPreviewSurface (texture, vertex colours or constant)
        Looks/physics_material          UsdPhysics.MaterialAPI: the label's friction and restitution
      Objects/<id>                      an articulated object (Isaac's URDF importer's layout): Xform at the
                                        root link's pose with ArticulationRootAPI and the labels, no body
        <link> ...                      one Xform per link at its pose (joints at zero), siblings, each
                                        with RigidBodyAPI, MassAPI, visual, collision/, Looks/ as above
        joints/<joint>                  PhysicsRevoluteJoint / PhysicsPrismaticJoint / PhysicsFixedJoint
      Background/<id>                   the same without RigidBodyAPI / MassAPI: static colliders
      Ground                            only for a scene without a floor (exporters/ground.py): Xform at
        collider                        the scene's lowest point; UsdGeom.Plane (axis Z), CollisionAPI, no
        Looks/physics_material          rigid body: a static, infinite collider as Isaac Sim's ground plane

Joints (``_write_joint``): ``physics:body0`` the parent link, ``physics:body1`` the child,
``localPos0`` / ``localRot0`` the joint frame in the parent link (the URDF origin, turned so that
its X axis is the URDF axis: ``physics:axis = "X"``), ``localPos1`` 0 and ``localRot1`` that turn
(the child link's frame is the joint frame at zero); limits in degrees (revolute) or metres
(prismatic), none for a continuous joint; where the input gives a damping, a
``PhysicsDriveAPI:angular`` / ``:linear`` of type force with stiffness 0 and that damping (per
degree for angular drives, as UsdPhysics defines them) and the effort as ``maxForce``. PhysX's
joint friction (``physxJoint:jointFriction``) is a dimensionless coefficient, not URDF's
friction force, so the input's friction is kept as ``hiscene:friction`` (N m or N) and not mapped.
No rigid body is nested under another: links are siblings under the articulation root. The
links of one object do not collide with each other (``physxArticulation:enabledSelfCollisions
= false``, Isaac's URDF importer's default, authored by name: PhysxSchema is not in usd-core).

Geometry is inline; textures are referenced relative to the stage file. Materials live
under their object so an object prim can be referenced on its own into another stage; the
physics material holds the values of the object's label (``ExportConfig.material``; unknown
labels and the catch-all background get the default material) and names its table key in
``hiscene:material``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics, UsdSemantics, UsdShade, Vt

from exporters.articulated import axis_alignment, usd_link_names
from exporters.config import ExportConfig
from exporters.ground import GROUND_LABEL, GroundPlan
from exporters.layout import USD_FILE, ObjectFiles
from exporters.mesh_io import mean_color
from exporters.prepare import PreparedLink, PreparedObject
from hiscene_sim.articulation import Joint
from hiscene_sim.rotations import quaternion_from_rotation

SEMANTIC_TAXONOMY = "class"
PART_TAXONOMY = "part"  # a link's own label (door, drawer) on the link prim; the object's class is on its root
OLD_SEMANTICS_NAME = "Semantics"  # Isaac Sim < 5.0: SemanticsAPI:Semantics


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear. Mesh colours are sRGB; displayColor and
    UsdPreviewSurface colour inputs are linear."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class WeldedSurface:
    """The visual mesh with vertices merged by position, so the USD mesh itself is closed.

    Textured meshes keep vertices split along UV seams (one UV per vertex); here the
    positions are welded and UVs / colours become per-corner (faceVarying) indexed primvars.
    ``corners`` indexes the visual mesh's vertices for each kept face corner.
    """

    def __init__(self, visual: trimesh.Trimesh, solid: trimesh.Trimesh) -> None:
        digits = trimesh.util.decimal_to_digits(trimesh.tol.merge)
        unique, inverse = trimesh.grouping.unique_rows(np.asarray(visual.vertices), digits=digits)
        welded = trimesh.Trimesh(np.asarray(visual.vertices)[unique], inverse[visual.faces], process=False)
        # drop what weld() drops from the solid: degenerate and duplicate faces
        keep = np.flatnonzero(welded.nondegenerate_faces())
        _, first = np.unique(np.sort(welded.faces[keep], axis=1), axis=0, return_index=True)
        keep = np.sort(keep[first])
        welded = trimesh.Trimesh(welded.vertices, welded.faces[keep], process=False)
        used = np.unique(welded.faces)
        remap = np.full(len(welded.vertices), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        self.points = np.asarray(welded.vertices)[used]
        self.faces = remap[welded.faces]
        self.corners = np.asarray(visual.faces)[keep]  # (F, 3) visual vertex per corner
        self.face_index = keep  # visual face per kept face
        check = trimesh.Trimesh(self.points, self.faces, process=False)
        self.from_visual = bool(check.is_watertight)
        if not self.from_visual:
            # welding the visual did not close it (should not happen for a repaired mesh):
            # use the solid's closed topology and lose per-corner appearance
            self.points = np.asarray(solid.vertices)
            self.faces = np.asarray(solid.faces)
            self.corners = self.face_index = None


def _set_mesh(mesh: UsdGeom.Mesh, points: np.ndarray, faces: np.ndarray) -> None:
    points = np.asarray(points, dtype=np.float32)
    mesh.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(points))
    mesh.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(faces), 3, dtype=np.int32)))
    mesh.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(np.asarray(faces, dtype=np.int32).ravel()))
    mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
    mesh.CreateExtentAttr(Vt.Vec3fArray.FromNumpy(np.stack([points.min(axis=0), points.max(axis=0)])))


def _shader(material: UsdShade.Material, name: str, shader_id: str) -> UsdShade.Shader:
    shader = UsdShade.Shader.Define(material.GetPrim().GetStage(), material.GetPath().AppendChild(name))
    shader.CreateIdAttr(shader_id)
    return shader


def _write_visual(
    stage: Usd.Stage, obj: PreparedObject, root: Sdf.Path, texture: str | None
) -> None:
    """Visual mesh, its appearance primvars and its UsdPreviewSurface material."""
    visual = obj.visual
    surface = WeldedSurface(visual, obj.solid)
    mesh = UsdGeom.Mesh.Define(stage, root.AppendChild("visual"))
    _set_mesh(mesh, surface.points, surface.faces)
    primvars = UsdGeom.PrimvarsAPI(mesh)
    kind = getattr(visual.visual, "kind", None)
    uv = getattr(visual.visual, "uv", None) if kind == "texture" else None
    textured = texture is not None and uv is not None and surface.from_visual
    vertex_colored = surface.from_visual and kind in ("vertex", "face")
    base = Gf.Vec3f(*(float(c) for c in srgb_to_linear(mean_color(visual)[:3])))

    if textured:
        st = primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.faceVarying)
        st.Set(Vt.Vec2fArray.FromNumpy(np.asarray(uv, dtype=np.float32)))
        st.SetIndices(Vt.IntArray.FromNumpy(surface.corners.ravel().astype(np.int32)))
    if vertex_colored:
        color = primvars.CreatePrimvar("displayColor", Sdf.ValueTypeNames.Color3fArray)
        if kind == "face":
            rgb = np.asarray(visual.visual.face_colors, dtype=np.float64)[surface.face_index, :3] / 255.0
            color.SetInterpolation(UsdGeom.Tokens.uniform)
            color.Set(Vt.Vec3fArray.FromNumpy(srgb_to_linear(rgb).astype(np.float32)))
        else:
            rgb = srgb_to_linear(np.asarray(visual.visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0)
            corner_rgb = rgb[surface.corners.ravel()].astype(np.float32)
            per_point = np.zeros((len(surface.points), 3), dtype=np.float32)
            per_point[surface.faces.ravel()] = corner_rgb
            if np.allclose(per_point[surface.faces.ravel()], corner_rgb, atol=1e-6):
                color.SetInterpolation(UsdGeom.Tokens.vertex)
                color.Set(Vt.Vec3fArray.FromNumpy(per_point))
            else:  # welded vertices with different colours: keep them per corner
                color.SetInterpolation(UsdGeom.Tokens.faceVarying)
                color.Set(Vt.Vec3fArray.FromNumpy(rgb.astype(np.float32)))
                color.SetIndices(Vt.IntArray.FromNumpy(surface.corners.ravel().astype(np.int32)))
    else:  # viewers without material support still get the object's average colour
        mesh.CreateDisplayColorAttr(Vt.Vec3fArray([base]))

    material = UsdShade.Material.Define(stage, root.AppendPath("Looks/material"))
    pbr = _shader(material, "PreviewSurface", "UsdPreviewSurface")
    pbr.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(0.6)
    pbr.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(0.0)
    diffuse = pbr.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
    material.CreateSurfaceOutput().ConnectToSource(pbr.ConnectableAPI(), "surface")
    if textured:
        reader = _shader(material, "st_reader", "UsdPrimvarReader_float2")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("st")
        tex = _shader(material, "diffuse_texture", "UsdUVTexture")
        # relative to the stage file, which sits at the export dir's root
        tex.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(f"./{texture}"))
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
        tex.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
        tex.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
            reader.ConnectableAPI().CreateOutput("result", Sdf.ValueTypeNames.Float2)
        )
        diffuse.ConnectToSource(tex.ConnectableAPI().CreateOutput("rgb", Sdf.ValueTypeNames.Float3))
    elif vertex_colored:
        reader = _shader(material, "color_reader", "UsdPrimvarReader_float3")
        reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set("displayColor")
        diffuse.ConnectToSource(reader.ConnectableAPI().CreateOutput("result", Sdf.ValueTypeNames.Float3))
    else:
        diffuse.Set(base)
    UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)


def _physics_material(stage: Usd.Stage, root: Sdf.Path, label: str, config: ExportConfig) -> UsdShade.Material:
    """``root/Looks/physics_material``: the label's friction and restitution."""
    values, key = config.material(label)
    material = UsdShade.Material.Define(stage, root.AppendPath("Looks/physics_material"))
    physics = UsdPhysics.MaterialAPI.Apply(material.GetPrim())
    physics.CreateStaticFrictionAttr(float(values.static_friction))
    physics.CreateDynamicFrictionAttr(float(values.dynamic_friction))
    physics.CreateRestitutionAttr(float(values.restitution))
    material.GetPrim().CreateAttribute("hiscene:material", Sdf.ValueTypeNames.String).Set(key)
    return material


def _bind_physics(prim: Usd.Prim, material: UsdShade.Material) -> None:
    UsdShade.MaterialBindingAPI.Apply(prim).Bind(
        material, UsdShade.Tokens.weakerThanDescendants, "physics"  # UsdShade has no token for this purpose name
    )


def _write_collision(stage: Usd.Stage, obj: PreparedObject | PreparedLink, root: Sdf.Path, config: ExportConfig,
                     label: str | None = None) -> None:
    """One convex-hull collider per hull, bound to the physics material of the object's label
    (``label``: the object's, for a link)."""
    material = _physics_material(stage, root, label or obj.label, config)
    group = UsdGeom.Xform.Define(stage, root.AppendChild("collision"))
    for i, hull in enumerate(obj.hulls):
        mesh = UsdGeom.Mesh.Define(stage, group.GetPath().AppendChild(f"hull_{i:03d}"))
        _set_mesh(mesh, hull.vertices, hull.faces)
        mesh.CreatePurposeAttr(UsdGeom.Tokens.guide)  # colliders are not rendered
        UsdPhysics.CollisionAPI.Apply(mesh.GetPrim())
        UsdPhysics.MeshCollisionAPI.Apply(mesh.GetPrim()).CreateApproximationAttr(UsdPhysics.Tokens.convexHull)
        _bind_physics(mesh.GetPrim(), material)


def _write_ground(stage: Usd.Stage, ground: GroundPlan, config: ExportConfig) -> None:
    """``/World/Ground``: a static plane collider at the ground's height (no rigid body)."""
    xform = UsdGeom.Xform.Define(stage, "/World/Ground")
    xform.AddTranslateOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Vec3d(*ground.position))
    _write_labels(xform.GetPrim(), GROUND_LABEL, ground.id)
    plane = UsdGeom.Plane.Define(stage, xform.GetPath().AppendChild("collider"))
    plane.CreateAxisAttr(UsdGeom.Tokens.z)
    plane.CreateWidthAttr(float(ground.size_m))  # what is drawn; PhysX collides with the infinite plane
    plane.CreateLengthAttr(float(ground.size_m))
    half = ground.size_m / 2.0
    plane.CreateExtentAttr(Vt.Vec3fArray([Gf.Vec3f(-half, -half, 0.0), Gf.Vec3f(half, half, 0.0)]))
    plane.CreateDisplayColorAttr(Vt.Vec3fArray([Gf.Vec3f(*(float(c) for c in srgb_to_linear((0.75, 0.75, 0.72))))]))
    UsdPhysics.CollisionAPI.Apply(plane.GetPrim())
    _bind_physics(plane.GetPrim(), _physics_material(stage, xform.GetPath(), GROUND_LABEL, config))


def _write_mass(prim: Usd.Prim, obj: PreparedObject | PreparedLink) -> None:
    """Rigid body with explicit mass, centre of mass and principal inertia."""
    UsdPhysics.RigidBodyAPI.Apply(prim)
    mass = UsdPhysics.MassAPI.Apply(prim)
    props = obj.mass
    moments, axes = props.principal_axes()
    w, x, y, z = quaternion_from_rotation(axes)  # principal frame -> body frame: I = R diag(m) R^T
    mass.CreateMassAttr(float(props.mass))
    mass.CreateCenterOfMassAttr(Gf.Vec3f(*props.center_of_mass))
    mass.CreateDiagonalInertiaAttr(Gf.Vec3f(*(float(m) for m in moments)))
    mass.CreatePrincipalAxesAttr(Gf.Quatf(w, x, y, z))


def _write_labels(prim: Usd.Prim, label: str, object_id: str) -> None:
    """Semantic label in both schemas Isaac Sim reads, plus provenance attributes."""
    labels = UsdSemantics.LabelsAPI.Apply(prim, SEMANTIC_TAXONOMY)
    labels.CreateLabelsAttr().Set(Vt.TokenArray([label]))
    # the older Isaac Semantics schema is not registered in usd-core: author it by name
    prim.AddAppliedSchema(f"SemanticsAPI:{OLD_SEMANTICS_NAME}")
    prefix = f"semantic:{OLD_SEMANTICS_NAME}:params"
    prim.CreateAttribute(f"{prefix}:semanticType", Sdf.ValueTypeNames.String).Set(SEMANTIC_TAXONOMY)
    prim.CreateAttribute(f"{prefix}:semanticData", Sdf.ValueTypeNames.String).Set(label)
    prim.CreateAttribute("hiscene:label", Sdf.ValueTypeNames.String).Set(label)
    prim.CreateAttribute("hiscene:id", Sdf.ValueTypeNames.String).Set(object_id)


def _quatf(rotation: np.ndarray) -> Gf.Quatf:
    w, x, y, z = quaternion_from_rotation(rotation)
    return Gf.Quatf(float(w), Gf.Vec3f(float(x), float(y), float(z)))


def _write_joint(stage: Usd.Stage, path: Sdf.Path, joint: Joint, body0: Sdf.Path, body1: Sdf.Path) -> UsdPhysics.Joint:
    """One joint between two link prims (see the module doc for frames, units and drives)."""
    if joint.type == "fixed":
        prim = UsdPhysics.FixedJoint.Define(stage, path)
    elif joint.type == "prismatic":
        prim = UsdPhysics.PrismaticJoint.Define(stage, path)
    else:
        prim = UsdPhysics.RevoluteJoint.Define(stage, path)
    prim.CreateBody0Rel().SetTargets([body0])
    prim.CreateBody1Rel().SetTargets([body1])
    align = axis_alignment(joint.axis) if joint.moves else np.eye(3)
    origin = joint.origin.matrix()
    prim.CreateLocalPos0Attr(Gf.Vec3f(*(float(v) for v in origin[:3, 3])))
    prim.CreateLocalRot0Attr(_quatf(origin[:3, :3] @ align))
    prim.CreateLocalPos1Attr(Gf.Vec3f(0.0, 0.0, 0.0))
    prim.CreateLocalRot1Attr(_quatf(align))
    if not joint.moves:
        return prim
    prim.CreateAxisAttr(UsdPhysics.Tokens.x)
    angular = joint.angular
    if joint.limited:
        to_usd = np.degrees if angular else float
        prim.CreateLowerLimitAttr(float(to_usd(joint.lower)))
        prim.CreateUpperLimitAttr(float(to_usd(joint.upper)))
    if joint.damping > 0:
        drive = UsdPhysics.DriveAPI.Apply(prim.GetPrim(), "angular" if angular else "linear")
        drive.CreateTypeAttr(UsdPhysics.Tokens.force)
        drive.CreateStiffnessAttr(0.0)
        drive.CreateDampingAttr(float(joint.damping * (np.pi / 180.0 if angular else 1.0)))  # per degree for angular
        drive.CreateTargetVelocityAttr(0.0)
        if joint.effort is not None and joint.effort > 0:
            drive.CreateMaxForceAttr(float(joint.effort))
    prim.GetPrim().CreateAttribute("hiscene:friction", Sdf.ValueTypeNames.Float).Set(float(joint.friction))
    return prim


def _write_articulation(stage: Usd.Stage, obj: PreparedObject, root: Sdf.Path, files: ObjectFiles | None,
                        config: ExportConfig) -> None:
    """The links of ``obj`` as sibling rigid bodies under ``root`` and its joints under ``root/joints``."""
    moving = not obj.is_background
    if moving:
        prim = stage.GetPrimAtPath(root)
        UsdPhysics.ArticulationRootAPI.Apply(prim)
        # PhysxSchema is not in usd-core: authored by name, as Isaac's URDF importer sets it by default
        prim.AddAppliedSchema("PhysxArticulationAPI")
        prim.CreateAttribute("physxArticulation:enabledSelfCollisions", Sdf.ValueTypeNames.Bool).Set(False)
    names = usd_link_names(obj)
    paths = {}
    for link in obj.links:
        xform = UsdGeom.Xform.Define(stage, root.AppendChild(names[link.name]))
        xform.AddTranslateOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Vec3d(*(float(v) for v in link.frame[:3, 3])))
        w, x, y, z = quaternion_from_rotation(link.frame[:3, :3])
        xform.AddOrientOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Quatd(w, x, y, z))
        prim = xform.GetPrim()
        paths[link.name] = prim.GetPath()
        UsdSemantics.LabelsAPI.Apply(prim, PART_TAXONOMY).CreateLabelsAttr().Set(Vt.TokenArray([link.label]))
        prim.CreateAttribute("hiscene:link", Sdf.ValueTypeNames.String).Set(link.name)
        if moving:
            _write_mass(prim, link)
        entry = files.links.get(link.name) if files else None
        _write_visual(stage, link, prim.GetPath(), entry.texture if entry else None)
        _write_collision(stage, link, prim.GetPath(), config, obj.label)
    if not moving:  # static colliders: nothing to join
        return
    UsdGeom.Scope.Define(stage, root.AppendChild("joints"))
    for joint in obj.articulation.joints:
        _write_joint(stage, root.AppendPath(f"joints/{joint.name}"), joint, paths[joint.parent], paths[joint.child])


def write_usd(
    objects: list[PreparedObject], files: dict[str, ObjectFiles], export_dir: Path, config: ExportConfig,
    ground: GroundPlan | None = None,
) -> Path:
    """Write ``export_dir/scene.usda``: every object with visual mesh, material, convex-hull
    colliders, mass properties (foreground only) and semantic labels, and ``ground``'s plane
    if it was added. Returns its path."""
    stage = Usd.Stage.CreateInMemory()
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    UsdPhysics.SetStageKilogramsPerUnit(stage, 1.0)
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    scene = UsdPhysics.Scene.Define(stage, "/World/PhysicsScene")
    scene.CreateGravityDirectionAttr(Gf.Vec3f(0.0, 0.0, -1.0))
    scene.CreateGravityMagnitudeAttr(9.81)

    for obj in objects:
        parent = "/World/Background" if obj.is_background else "/World/Objects"
        UsdGeom.Xform.Define(stage, parent)
        xform = UsdGeom.Xform.Define(stage, f"{parent}/{obj.id}")
        q = np.asarray(obj.orientation, dtype=np.float64)
        q /= np.linalg.norm(q)
        xform.AddTranslateOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Vec3d(*obj.position))
        xform.AddOrientOp(UsdGeom.XformOp.PrecisionDouble).Set(Gf.Quatd(*(float(v) for v in q)))
        prim = xform.GetPrim()
        root = prim.GetPath()
        _write_labels(prim, obj.label, obj.id)
        entry = files.get(obj.id)
        if obj.articulation is not None:
            _write_articulation(stage, obj, root, entry, config)
            continue
        if not obj.is_background:  # background: colliders without a body are static
            _write_mass(prim, obj)
        _write_visual(stage, obj, root, entry.texture if entry else None)
        _write_collision(stage, obj, root, config)
    if ground is not None and ground.added:
        _write_ground(stage, ground, config)

    path = Path(export_dir) / USD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    stage.GetRootLayer().Export(str(path))
    return path

// hiscene view: the scene in 3D (three.js, inlined above), linked to the object table.
// Reads the JSON blob #hiscene-data that hiscene_sim/view/page.py writes; loads nothing.
// window.hisceneViewer is the page's state for people poking in the console and for the tests.
(function () {
  'use strict';
  const data = JSON.parse(document.getElementById('hiscene-data').textContent);
  const canvas = document.getElementById('view');
  const state = { selected: null, hovered: null, colorMode: 'label', poseSet: data.defaultPose,
                  showVisual: true, showHulls: false, renderCount: 0, ready: false, error: null };
  window.hisceneViewer = state;

  const SELECT_EMISSIVE = 0x6a5200, HOVER_EMISSIVE = 0x303030, HIGHLIGHT = 0xffc400;

  let renderer;
  try {
    renderer = new THREE.WebGLRenderer({ canvas: canvas, antialias: true, preserveDrawingBuffer: true });
  } catch (e) {
    state.error = 'WebGL is not available in this browser: ' + e.message;
    const box = document.getElementById('webgl-error');
    box.textContent = state.error + ' (the table below still lists every object)';
    box.hidden = false;
  }

  function decode(b64, Type) {
    const bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new Type(bytes.buffer);
  }

  function geometry(packed) {
    const g = new THREE.BufferGeometry();
    g.setAttribute('position', new THREE.BufferAttribute(decode(packed.positions, Float32Array), 3));
    g.setIndex(new THREE.BufferAttribute(decode(packed.indices, packed.index_bytes === 2 ? Uint16Array : Uint32Array), 1));
    if (packed.colors) g.setAttribute('color', new THREE.BufferAttribute(decode(packed.colors, Uint8Array), 3, true));
    g.computeVertexNormals();
    g.computeBoundingSphere();
    return g;
  }

  // -- the scene -------------------------------------------------------------------------------
  const scene = new THREE.Scene();
  scene.background = new THREE.Color(0xeef1f5);
  const hemi = new THREE.HemisphereLight(0xffffff, 0x8a8f99, 1.6);
  hemi.position.set(0, 0, 1);
  scene.add(hemi);
  const sun = new THREE.DirectionalLight(0xffffff, 1.8);
  scene.add(sun);
  scene.add(sun.target);

  const objects = {};  // id -> {data, group, visual, hulls, edges, row}
  const pickables = [];
  for (const o of data.objects) {
    const group = new THREE.Group();
    group.userData.id = o.id;
    const material = new THREE.MeshLambertMaterial({ color: o.labelColor, flatShading: true, side: THREE.DoubleSide });
    const visual = new THREE.Mesh(o.visual ? geometry(o.visual) : new THREE.BufferGeometry(), material);  // none: listed, not drawn
    visual.userData.id = o.id;
    group.add(visual);
    pickables.push(visual);
    let hulls = null, edges = null;
    if (o.hulls) {
      const hg = geometry(o.hulls);
      hulls = new THREE.Mesh(hg, new THREE.MeshLambertMaterial({
        color: o.labelColor, transparent: true, opacity: 0.45, depthWrite: false, side: THREE.DoubleSide,
        polygonOffset: true, polygonOffsetFactor: -2, polygonOffsetUnits: -2 }));  // in front of a coplanar visual
      hulls.userData.id = o.id;
      hulls.visible = false;
      edges = new THREE.LineSegments(new THREE.EdgesGeometry(hg, 25), new THREE.LineBasicMaterial({ color: 0x202428 }));
      edges.visible = false;
      group.add(hulls, edges);
      pickables.push(hulls);
    }
    scene.add(group);
    objects[o.id] = { data: o, group: group, visual: visual, hulls: hulls, edges: edges,
                      row: document.querySelector('tr[data-id="' + CSS.escape(o.id) + '"]') };
  }
  const box = new THREE.Box3();
  const boxHelper = new THREE.Box3Helper(box, HIGHLIGHT);
  boxHelper.visible = false;
  scene.add(boxHelper);

  let grid = null;
  const camera = new THREE.PerspectiveCamera(35, 1, 0.01, 100);
  camera.up.set(0, 0, 1);
  const controls = renderer ? new window.HisceneOrbitControls(camera, canvas) : null;

  // -- state -> picture --------------------------------------------------------------------------
  function baseColor(o) {
    return state.colorMode === 'verdict' ? o.data.verdictColor : o.data.labelColor;
  }

  function paint() {
    for (const id in objects) {
      const o = objects[id], own = state.colorMode === 'own' && !!(o.data.visual && o.data.visual.colors);
      const m = o.visual.material;
      m.vertexColors = own;
      m.color.set(own ? 0xffffff : baseColor(o));
      if (id === state.selected) m.color.lerp(new THREE.Color(HIGHLIGHT), 0.35);
      m.emissive.setHex(id === state.selected ? SELECT_EMISSIVE : id === state.hovered ? HOVER_EMISSIVE : 0x000000);
      m.needsUpdate = true;
      if (o.hulls) {
        o.hulls.material.color.set(baseColor(o));
        o.hulls.material.emissive.setHex(m.emissive.getHex());
      }
      o.visual.visible = state.showVisual;
      if (o.hulls) { o.hulls.visible = state.showHulls; o.edges.visible = state.showHulls; }
      if (o.row) {
        o.row.classList.toggle('selected', id === state.selected);
        o.row.classList.toggle('hovered', id === state.hovered);
      }
    }
    const sel = state.selected && objects[state.selected];
    boxHelper.visible = !!sel;
    if (sel) box.setFromObject(sel.group);
    details();
    render();
  }

  function place(poseSet) {
    state.poseSet = poseSet;
    for (const id in objects) {
      const o = objects[id], p = o.data.poses[poseSet] || o.data.poses[data.defaultPose];
      o.group.position.set(p[0], p[1], p[2]);
      o.group.quaternion.set(p[4], p[5], p[6], p[3]);  // ours: w, x, y, z; three.js: x, y, z, w
      o.group.updateMatrixWorld(true);
    }
    document.querySelectorAll('[data-pose]').forEach(function (b) {
      b.classList.toggle('active', b.getAttribute('data-pose') === poseSet);
    });
    paint();
  }

  function frame() {
    // the camera on the isometric diagonal, framing the foreground (the whole scene without one)
    const fit = new THREE.Box3();
    for (const id in objects) if (!objects[id].data.background) fit.expandByObject(objects[id].visual);
    if (fit.isEmpty()) for (const id in objects) fit.expandByObject(objects[id].visual);
    const sphere = fit.getBoundingSphere(new THREE.Sphere());
    const r = Math.max(sphere.radius, 0.05);
    const dist = r / Math.sin(THREE.MathUtils.degToRad(camera.fov / 2)) * 1.1;
    const dir = new THREE.Vector3(1, -1, 0.82).normalize();
    camera.position.copy(sphere.center).addScaledVector(dir, dist);
    camera.near = dist / 200; camera.far = dist * 50;
    camera.updateProjectionMatrix();
    controls.target.copy(sphere.center);
    controls.update();
    sun.position.copy(sphere.center).add(new THREE.Vector3(1, -1.5, 3).multiplyScalar(r * 4));
    sun.target.position.copy(sphere.center);
    if (data.groundZ !== null && !grid) {
      grid = new THREE.GridHelper(Math.max(r * 6, 1), 20, 0xa8aeb8, 0xcfd4db);
      grid.rotation.x = Math.PI / 2;  // GridHelper lies in x-z; ours is x-y, +Z up
      grid.position.set(sphere.center.x, sphere.center.y, data.groundZ - 0.0005);
      scene.add(grid);
    }
  }

  function resize() {
    const w = Math.max(canvas.clientWidth, 1), h = Math.max(canvas.clientHeight, 1);
    if (canvas.width !== Math.round(w * renderer.getPixelRatio()) || canvas.height !== Math.round(h * renderer.getPixelRatio())) {
      renderer.setSize(w, h, false);
      camera.aspect = w / h;
      camera.updateProjectionMatrix();
    }
  }

  function renderNow() {
    if (!renderer) return;
    resize();
    renderer.render(scene, camera);
    state.renderCount++;
  }
  let pending = false;
  function render() {  // on demand: nothing draws while nothing changes
    if (!renderer || pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; renderNow(); });
  }

  // -- details of the selected object --------------------------------------------------------
  function line(parent, text, cls) {
    const el = document.createElement('div');
    el.textContent = text;
    if (cls) el.className = cls;
    parent.appendChild(el);
  }
  function details() {
    const panel = document.getElementById('details');
    panel.textContent = '';
    const o = state.selected && objects[state.selected];
    if (!o) { line(panel, 'Click an object (in 3D or in the table) for its details.', 'hint'); return; }
    const d = o.data;
    line(panel, d.id + ' (' + d.label + '): ' + d.verdict, 'title verdict-' + d.verdict.replace('-', 'none'));
    for (const sim of data.simulators) {
      const c = d.checks[sim];
      if (!c) continue;
      line(panel, data.simulatorNames[sim] + ': ' + (c.stable ? 'stable' : 'unstable') + ', drift ' + c.drift + ' mm, rotation ' + c.rotation + ' deg');
      for (const issue of c.issues) line(panel, '\u2022 ' + issue, 'issue');
    }
    for (const m of d.moves) line(panel, 'settle ' + m, 'move');
  }

  // -- selection ------------------------------------------------------------------------------
  function select(id) {
    state.selected = (id && objects[id]) ? id : null;
    const o = state.selected && objects[state.selected];
    if (o && o.row) o.row.scrollIntoView({ block: 'nearest' });
    paint();
    return state.selected;
  }
  function hover(id) {
    id = (id && objects[id]) ? id : null;
    if (id === state.hovered) return;
    state.hovered = id;
    paint();
  }

  const raycaster = new THREE.Raycaster();
  function pick(event) {
    const rect = canvas.getBoundingClientRect();
    const ndc = new THREE.Vector2(((event.clientX - rect.left) / rect.width) * 2 - 1,
                                  -((event.clientY - rect.top) / rect.height) * 2 + 1);
    raycaster.setFromCamera(ndc, camera);
    const hits = raycaster.intersectObjects(pickables.filter(function (m) { return m.visible; }), false);
    return hits.length ? hits[0].object.userData.id : null;
  }

  document.querySelectorAll('tr[data-id]').forEach(function (row) {
    const id = row.getAttribute('data-id');
    row.addEventListener('click', function () { select(state.selected === id ? null : id); });
    row.addEventListener('mouseenter', function () { hover(id); });
    row.addEventListener('mouseleave', function () { hover(null); });
  });
  document.querySelectorAll('input[name="color"]').forEach(function (input) {
    input.addEventListener('change', function () { state.colorMode = input.value; legend(); paint(); });
  });
  document.getElementById('show-visual').addEventListener('change', function (e) { state.showVisual = e.target.checked; paint(); });
  document.getElementById('show-hulls').addEventListener('change', function (e) { state.showHulls = e.target.checked; paint(); });
  document.querySelectorAll('[data-pose]').forEach(function (b) {
    b.addEventListener('click', function () { place(b.getAttribute('data-pose')); });
  });

  function legend() {
    const el = document.getElementById('legend');
    el.textContent = '';
    const entries = state.colorMode === 'verdict' ? data.verdictLegend : state.colorMode === 'label' ? data.labelLegend : [];
    for (const [name, color] of entries) {
      const item = document.createElement('span');
      item.className = 'swatch';
      const dot = document.createElement('i');
      dot.style.background = color;
      item.appendChild(dot);
      item.appendChild(document.createTextNode(name));
      el.appendChild(item);
    }
  }

  state.select = select;
  state.hover = hover;
  state.place = place;
  state.renderNow = renderNow;
  state.setColorMode = function (mode) {
    state.colorMode = mode;
    document.querySelectorAll('input[name="color"]').forEach(function (i) { i.checked = i.value === mode; });
    legend(); paint();
  };
  state.setShowHulls = function (on) { state.showHulls = !!on; document.getElementById('show-hulls').checked = !!on; paint(); };
  state.meshColor = function (id) {  // what the visual mesh of ``id`` is drawn with, for tests
    const m = objects[id].visual.material;
    return { color: m.color.getHexString(), emissive: m.emissive.getHexString(), vertexColors: m.vertexColors };
  };
  state.position = function (id) { return objects[id].group.position.toArray(); };
  state.screenPoint = function (id) {  // the page coordinates of the centre of ``id``'s visual mesh
    const c = new THREE.Box3().setFromObject(objects[id].visual).getCenter(new THREE.Vector3()).project(camera);
    const rect = canvas.getBoundingClientRect();
    return [rect.left + (c.x + 1) / 2 * rect.width, rect.top + (1 - c.y) / 2 * rect.height];
  };

  legend();
  if (renderer) {
    renderer.setPixelRatio(window.devicePixelRatio || 1);
    resize();
    place(state.poseSet);
    frame();
    controls.addEventListener('change', render);
    let down = null;
    canvas.addEventListener('pointerdown', function (e) { down = [e.clientX, e.clientY]; });
    canvas.addEventListener('pointerup', function (e) {  // a click, not the end of a drag
      if (down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) < 5) select(pick(e));
      down = null;
    });
    canvas.addEventListener('pointermove', function (e) { if (!e.buttons) hover(pick(e)); });
    canvas.addEventListener('pointerleave', function () { hover(null); });
    document.getElementById('reset-view').addEventListener('click', function () { frame(); render(); });
    window.addEventListener('resize', render);
    renderNow();
  } else {
    details();
  }
  state.ready = true;
})();

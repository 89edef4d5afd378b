/* The review dashboard's browser viewer: NiiVue (WebGL2) in a Streamlit component.
 *
 * Python (ui/widgets/image_viewer.py) sends a JSON `spec` (the layers, their roles, colours and
 * window presets) and, only the first time this browser tab needs a layer, the layer's pixels as
 * a gzipped NIfTI in a bytes argument `b_<id>`. Pixels are kept here by id, in a cache shared by
 * every viewer of the tab (it lives in the app's window, so it outlives this iframe across page
 * switches); a layer the cache has lost is asked for again with a `missing` value.
 *
 * Everything a reader does to the picture (window/level, zoom, pan, invert, slices, heatmap and
 * mask opacity, colours, visibility, the ruler) happens here, with no server round trip.
 */
(function () {
  "use strict";

  const NV = window.niivue;
  const canvas = document.getElementById("gl");
  const stage = document.getElementById("stage");
  const toolbar = document.getElementById("toolbar");
  const layersBar = document.getElementById("layers");
  const statusLine = document.getElementById("status");
  const banner = document.getElementById("banner");
  const message = document.getElementById("message");

  // --- The Streamlit component protocol (API version 1) -------------------------------------
  function post(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data || {}), "*");
  }
  function setValue(value) {
    post("streamlit:setComponentValue", { value: value, dataType: "json" });
  }
  function setHeight() {
    post("streamlit:setFrameHeight", { height: document.documentElement.scrollHeight });
  }

  // --- Pixels, by layer id, shared by the tab's viewers -------------------------------------
  const CACHE_LIMIT_BYTES = 768 * 1024 * 1024;
  const host = (function () {
    try {
      void window.parent.document; // throws when the app's window is another origin
      return window.parent;
    } catch (err) {
      return window;
    }
  })();
  const cache = host.__reviewViewerPixels || (host.__reviewViewerPixels = new host.Map());
  // How the reader left each case (window, zoom, pan, crosshair): a viewer that Streamlit
  // rebuilds (the page moved it) reopens the case as it was, with everything over it shown.
  const views = host.__reviewViewerViews || (host.__reviewViewerViews = new host.Map());
  // Viewers of one sync group (a case beside its prior) follow the one the reader is using:
  // zoom, pan, window and, for volumes, the crosshair by position in mm (so linked slices).
  const groups = host.__reviewViewerGroups || (host.__reviewViewerGroups = new host.Map());

  function remember(id, bytes) {
    // Copied into the app window's realm: the bytes outlive this iframe.
    const kept = new host.Uint8Array(bytes.byteLength);
    kept.set(bytes);
    cache.delete(id);
    cache.set(id, kept);
    let total = 0;
    cache.forEach(function (v) { total += v.byteLength; });
    for (const key of Array.from(cache.keys())) {
      if (total <= CACHE_LIMIT_BYTES) break;
      if (key === id) continue;
      total -= cache.get(key).byteLength;
      cache.delete(key);
    }
  }
  function recall(id) {
    const bytes = cache.get(id);
    if (bytes) { cache.delete(id); cache.set(id, bytes); }
    return bytes;
  }

  // --- State ----------------------------------------------------------------------------------
  let nv = null;
  let spec = null;
  let sceneId = null;
  const shown = new Map(); // role -> { id, image }
  let scene = null; // per case: window, invert, hidden labels
  // The reader's preferences (heatmap opacity and colours, mask opacity, layout) for the tab.
  const prefs = host.__reviewViewerPrefs ||
    (host.__reviewViewerPrefs = { heatOpacity: null, heatColormap: null, maskOpacity: null, tool: null, layout: "multi" });
  let pointer = { x: 0, y: 0, inside: false };
  const stats = { draws: 0, lastDraw: 0 };
  let armed = null;
  let busy = false;
  let reportedError = false; // the page was told of an error that a later good render clears
  let pendingArgs = null;
  let showingNothing = false; // the last render was an empty scene (no image yet)

  // The benchmark's clock: the timestamp of the armed event type, taken by listeners registered
  // before any other, so they run before the handler that draws.
  for (const type of ["keydown", "wheel", "mousemove", "input"]) {
    window.addEventListener(type, function (e) {
      if (armed && armed.type === e.type && armed.event === null) armed.event = e.timeStamp;
    }, true);
  }

  function showMessage(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  function webgl2() {
    try {
      return !!document.createElement("canvas").getContext("webgl2");
    } catch (err) {
      return false;
    }
  }

  async function ensureNiivue() {
    if (nv) return nv;
    nv = new NV.Niivue({
      backColor: [0, 0, 0, 1],
      show3Dcrosshair: false,
      isResizeCanvas: true,
      dragAndDropEnabled: false,
      logLevel: "error",
      loadingText: "",
      isColorbar: false,
      multiplanarShowRender: NV.SHOW_RENDER.NEVER,
      crosshairWidth: 1,
      crosshairColor: [1, 0.3, 0.3, 0.9],
      isRadiologicalConvention: true,
      isOrientationTextVisible: true,
      fontMinPx: 20, // orientation letters and ruler text; NiiVue's 13 px was hard to read
      fontColor: [1, 0.85, 0.2, 1], // orientation letters in amber: NiiVue's grey was hard to read on a scan
      measureTextColor: [1, 1, 0.2, 1],
      measureLineColor: [1, 1, 0.2, 1],
      isNearestInterpolation: false,
    });
    await nv.attachToCanvas(canvas);
    const draw = nv.drawScene.bind(nv);
    nv.drawScene = function () {
      const out = draw();
      stats.draws += 1;
      stats.lastDraw = performance.now();
      scheduleStatus();
      saveView();
      if (group && !following && host.__reviewViewerDriver === me) broadcast();
      if (armed && armed.event) {
        const done = armed;
        armed = null;
        // WebGL only queues the frame's commands: a one-pixel read waits until the GPU (in
        // SwiftShader, the CPU) has executed them, so the figure includes drawing the pixels and
        // not just issuing the calls (without it, 7 ms read where the GPU took 150).
        nv.gl.readPixels(0, 0, 1, 1, nv.gl.RGBA, nv.gl.UNSIGNED_BYTE, new Uint8Array(4));
        requestAnimationFrame(function () { done.resolve(performance.now() - done.event); });
      }
      return out;
    };
    nv.onLocationChange = function () { scheduleStatus(); };
    return nv;
  }

  // --- Sync groups ----------------------------------------------------------------------------
  let group = null;
  let following = false; // drawing a peer's view: not broadcast back
  let syncError = null; // the last peer that could not follow (its frame gone), for the tests
  const me = {
    follow: function (view) {
      const img = image("image");
      if (!nv || !img) return;
      following = true;
      try {
        nv.scene.pan2Dxyzmm = [view.pan[0], view.pan[1], view.pan[2], view.pan[3]];
        if (spec.kind !== "xray" && view.mm) {
          nv.scene.crosshairPos = nv.mm2frac([view.mm[0], view.mm[1], view.mm[2]]);
        }
        const windowChanged = img.cal_min !== view.calMin || img.cal_max !== view.calMax || img.colormapInvert !== view.invert;
        if (windowChanged && spec.kind === view.kind) {
          img.cal_min = view.calMin;
          img.cal_max = view.calMax;
          img.colormapInvert = view.invert;
          scene.invert = view.invert;
          reblendImage();
        } else {
          nv.drawScene();
        }
      } finally {
        following = false;
      }
    },
  };

  function joinGroup(name) {
    if (group === name) return;
    leaveGroup();
    if (!name) return;
    group = name;
    if (!groups.has(name)) groups.set(name, new host.Set());
    groups.get(name).add(me);
  }
  function leaveGroup() {
    if (!group) return;
    const members = groups.get(group);
    if (members) {
      members.delete(me);
      if (members.size === 0) groups.delete(group);
    }
    if (host.__reviewViewerDriver === me) host.__reviewViewerDriver = null;
    group = null;
  }
  window.addEventListener("pagehide", leaveGroup);

  function broadcast() {
    const img = image("image");
    const members = groups.get(group);
    if (!img || !members) return;
    const p = nv.scene.pan2Dxyzmm;
    const mm = spec.kind === "xray" ? null : nv.frac2mm(nv.scene.crosshairPos);
    const view = {
      kind: spec.kind,
      pan: [p[0], p[1], p[2], p[3]],
      mm: mm ? [mm[0], mm[1], mm[2]] : null,
      calMin: img.cal_min,
      calMax: img.cal_max,
      invert: !!img.colormapInvert,
    };
    for (const peer of Array.from(members)) {
      if (peer === me) continue;
      try {
        peer.follow(view);
      } catch (err) {
        syncError = String(err && err.message ? err.message : err);
        members.delete(peer); // its frame is gone
      }
    }
  }

  // The viewer under the reader's hand drives its group.
  for (const type of ["pointerdown", "wheel", "keydown", "pointerenter"]) {
    window.addEventListener(type, function () { if (group) host.__reviewViewerDriver = me; }, true);
  }

  // --- Layers ---------------------------------------------------------------------------------
  function layer(role) {
    return spec.layers.find(function (l) { return l.role === role; }) || null;
  }
  function image(role) {
    const entry = shown.get(role);
    return entry ? entry.image : null;
  }

  async function toImage(entry) {
    const bytes = recall(entry.id);
    // A copy in this iframe's realm: NiiVue tests `instanceof ArrayBuffer`, which a buffer of the
    // app window's realm (where the cache keeps it) fails.
    const local = new Uint8Array(bytes.byteLength);
    local.set(bytes);
    const options = { url: entry.name, buffer: local.buffer, name: entry.name, colormap: entry.colormap || "gray", opacity: 1 };
    if (entry.cal_min !== undefined && entry.cal_min !== null) {
      options.cal_min = entry.cal_min;
      options.cal_max = entry.cal_max;
      options.trustCalMinMax = true;
    }
    const img = await NV.NVImage.loadFromUrl(options);
    if (entry.labels) img.setColormapLabel(labelTable(entry, new Set()));
    return img;
  }

  function labelTable(entry, hidden) {
    const table = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [""] };
    for (const l of entry.labels) {
      table.R.push(l.rgb[0]);
      table.G.push(l.rgb[1]);
      table.B.push(l.rgb[2]);
      table.A.push(hidden.has(l.value) ? 0 : 255);
      table.I.push(l.value);
      table.labels.push(l.name);
    }
    return table;
  }

  const ORDER = ["image", "outline", "heatmap", "labels"];

  // A volume's label map, and a radiograph's crop outline, is NiiVue's drawing layer when it can
  // be (uint8, on the image's grid): its opacity is a shader uniform and its colours a small
  // table, so neither re-blends the image. Otherwise (more than 255 labels) it is an overlay
  // like the others. A scene has one or the other, never both.
  const DRAWN = ["labels", "outline"];
  function isDrawing(entry) {
    return !!(entry && entry.drawing);
  }
  function drawingRole() {
    return DRAWN.find(function (r) { return isDrawing(shown.get(r)); }) || null;
  }

  // NiiVue re-blends every layer on each addVolume / removeVolume (updateGLVolume), and each
  // re-blend of a 512x512 radiograph with its overlays took about 150 ms of SwiftShader on a
  // 2-core machine (the first layer also recomputes a gradient texture): a heatmap swapped that
  // way re-blended it about a dozen times. The list is set in one go and re-blended once per
  // render, after the window and the layers' colours and opacities are set.
  function setVolumes(list) {
    nv.volumes = list;
    nv.back = list.length ? list[0] : null;
    nv.overlays = list.slice(1);
  }

  // A removed drawing is closed after the re-blend, unless a new one replaces it (closing draws).
  let drawingGone = false;
  function removeShown(role, entry) {
    if (isDrawing(entry)) drawingGone = true;
    shown.delete(role); // an overlay leaves NiiVue's list when the list is set again
  }

  // Loads the spec's layers that are not shown yet and sets NiiVue's list (image first, then the
  // overlays, as it draws them); returns the new entries. Nothing is re-blended here.
  async function loadLayers(fresh) {
    if (fresh) {
      for (const [role, entry] of Array.from(shown.entries())) removeShown(role, entry);
    }
    // Remove layers whose content changed or that are gone, then add the new ones in order.
    for (const [role, entry] of Array.from(shown.entries())) {
      const wanted = layer(role);
      if (!wanted || wanted.id !== entry.id) removeShown(role, entry);
    }
    // A new label map's place is decided once, here: the drawing layer or an overlay.
    const added = [];
    for (const role of ORDER) {
      const wanted = layer(role);
      if (!wanted || shown.has(role)) continue;
      const img = await toImage(wanted);
      const limit = nv.uiData.max3D;
      if (role === "image" && [1, 2, 3].some(function (i) { return img.hdr.dims[i] > limit; })) {
        // Past its 3D-texture limit NiiVue draws the pixels in file order (upside down, no
        // overlays): say so rather than draw it wrong.
        throw new Error("this image has " + img.hdr.dims.slice(1, 4).join(" × ") + " voxels, more than this browser's " +
          "graphics can hold (" + limit + " a side); choose the server-rendered view");
      }
      const entry = { id: wanted.id, image: img, drawing: DRAWN.includes(role) && canDraw(img) };
      shown.set(role, entry);
      added.push(entry);
    }
    const order = ORDER.filter(function (r) { return shown.has(r) && !isDrawing(shown.get(r)); })
      .map(function (r) { return shown.get(r).image; });
    const current = nv.volumes;
    if (current.length !== order.length || current.some(function (v, i) { return v !== order[i]; })) setVolumes(order);
    return added;
  }

  // After the re-blend (a drawing needs the image's textures): new label maps become the drawing
  // layer, or an overlay when NiiVue refuses one (re-blended again, the rare case).
  function attachDrawings(added) {
    for (const entry of added) {
      if (!entry.drawing) continue;
      applyLayers(false); // the drawing's colours and opacity: uniforms, no re-blend
      if (nv.loadDrawing(entry.image)) { // it draws the scene
        drawingGone = false;
      } else {
        entry.drawing = false;
        setVolumes(nv.volumes.concat([entry.image]));
        applyLayers(false);
        nv.updateGLVolume();
      }
    }
    if (drawingGone) {
      drawingGone = false;
      nv.closeDrawing();
    }
  }

  function canDraw(img) {
    const back = image("image");
    return !!back && img.img instanceof Uint8Array &&
      [1, 2, 3].every(function (i) { return img.hdr.dims[i] === back.hdr.dims[i]; });
  }

  // --- Rendering a spec -----------------------------------------------------------------------
  window.addEventListener("message", function (event) {
    const data = event.data;
    if (!data || data.type !== "streamlit:render") return;
    // Pixels are kept as they arrive: while a render is busy, the arguments that wait are
    // replaced by newer ones, which do not carry pixels sent before (a finding chosen between
    // two clicks, its heatmap). Lost, they were asked for again: one more page rerun each.
    for (const name of Object.keys(data.args || {})) {
      const bytes = data.args[name];
      if (name.indexOf("b_") === 0 && bytes && bytes.byteLength) remember(name.slice(2), bytes);
    }
    pendingArgs = data.args;
    if (!busy) drain();
  });

  async function drain() {
    busy = true;
    try {
      while (pendingArgs) {
        const args = pendingArgs;
        pendingArgs = null;
        await render(args);
      }
    } catch (err) {
      // The next render starts the scene afresh: its layers may be loaded without their drawing.
      sceneId = null;
      showMessage("The viewer could not show this image: " + (err && err.message ? err.message : err));
      reportedError = true;
      setValue({ webgl: true, error: String(err && err.message ? err.message : err), nonce: Date.now() });
      setHeight(); // the message must be seen: a frame of height 0 hid it
    } finally {
      busy = false;
    }
  }

  // A request for pixels is a page rerun, and a rerun can be cut short by another (a second
  // viewer asking at the same moment): unanswered after a while, it is asked again, a few times.
  let askAgain = null;
  function ask(missing, tries) {
    setValue({ webgl: true, missing: missing, nonce: Date.now() + Math.random() });
    if (tries < 5) askAgain = setTimeout(function () { ask(missing, tries + 1); }, 2500 * (tries + 1));
  }

  async function render(args) {
    spec = typeof args.spec === "string" ? JSON.parse(args.spec) : args.spec;
    stage.style.height = spec.height + "px";
    const missing = [];
    for (const entry of spec.layers) {
      if (!cache.has(entry.id)) missing.push(entry.id);
    }
    if (!webgl2()) {
      showMessage("This browser has no WebGL2, which the viewer needs; the page shows the server-rendered view.");
      setValue({ webgl: false });
      setHeight();
      return;
    }
    clearTimeout(askAgain);
    if (!spec.layers.length) {
      await showNothing(spec.message || "");
      return;
    }
    showingNothing = false; // an image is on its way: not ready until it is drawn
    if (missing.length) {
      showMessage("Loading the image…");
      ask(missing, 0);
      setHeight();
      return;
    }
    await ensureNiivue();
    joinGroup(spec.sync || null);
    const fresh = spec.scene !== sceneId;
    if (fresh) {
      sceneId = spec.scene;
      scene = {
        level: spec.window.level,
        width: spec.window.width,
        invert: false,
        hidden: new Set(),
        outline: spec.kind === "xray",
        heatHidden: false,
      };
      // A case reopened in this tab comes back with its window, zoom and crosshair, but with
      // its masks, heatmap and crop outline shown: a mask hidden earlier, kept hidden, drew a
      // reopened segmentation's legend over bare planes.
      const before = views.get(sceneId);
      if (before) Object.assign(scene, JSON.parse(before.scene));
      if (prefs.heatOpacity === null) prefs.heatOpacity = spec.heatmap_opacity;
      if (prefs.heatColormap === null) prefs.heatColormap = spec.heatmap_colormap;
      if (prefs.maskOpacity === null) prefs.maskOpacity = spec.mask_opacity;
      prefs.tool = spec.kind === "xray" ? "window" : "crosshair";
    }
    const saved = fresh ? views.get(sceneId) : null;
    restoring = true; // nothing drawn before the re-blend below is the reader's view
    const added = await loadLayers(fresh);
    configure(fresh);
    if (saved) restoreView(saved);
    buildToolbar();
    buildLayerControls();
    if (fresh) applyWindow(false);
    applyLayers(false);
    goTo(spec.goto);
    restoring = false;
    nv.updateGLVolume(); // the one re-blend of this render; it draws the scene
    attachDrawings(added);
    showMessage("");
    updateBanner();
    setHeight();
    // Tell the page only what it must act on: every value posted is a rerun of the whole page.
    // A shown scene needs no answer, unless the last thing said was an error, which it clears.
    if (reportedError) {
      reportedError = false;
      setValue({ webgl: true });
    }
  }

  // No image yet (the page waits for an upload): the last case leaves the screen and NiiVue
  // starts now, so that the frame the page keeps for the next image draws it without that wait.
  async function showNothing(text) {
    await ensureNiivue();
    showingNothing = true;
    for (const [role, entry] of Array.from(shown.entries())) removeShown(role, entry);
    if (drawingGone) {
      drawingGone = false;
      nv.closeDrawing();
    }
    setVolumes([]);
    sceneId = null;
    scene = null;
    toolbar.replaceChildren();
    layersBar.replaceChildren();
    statusLine.textContent = "";
    banner.classList.add("off");
    banner.textContent = "\u00a0";
    nv.drawScene();
    showMessage(text);
    setHeight();
  }

  function configure(fresh) {
    const xray = spec.kind === "xray";
    // Options set directly: NiiVue's setters draw (setCrosshairWidth, setSliceType) or re-blend
    // (setRadiologicalConvention) on each call, and the render re-blends and draws once after.
    nv.opts.isOrientationTextVisible = !xray;
    nv.opts.crosshairWidth = xray ? 0 : 1;
    if (nv.crosshairs3D) nv.crosshairs3D.mm[0] = NaN;
    nv.opts.isRadiologicalConvention = !xray && spec.radiological;
    // The ruler's "mm" only where the numbers are millimetres: a radiograph's are its pixels (the
    // status line says so); it read "371 mm" on a JPEG.
    nv.opts.showMeasureUnits = !xray;
    setLayout(xray ? "axial" : prefs.layout);
    setTool(prefs.tool);
    if (fresh) {
      // A new scene opens unzoomed with the crosshair in the middle of the volume.
      nv.scene.pan2Dxyzmm = [0, 0, 0, 1];
      nv.scene.crosshairPos = [0.5, 0.5, 0.5];
    }
  }

  let lastGoto = null;
  function goTo(target) {
    // A structure chosen on the page: its middle slice along one axis (0 sagittal... as VIEWS).
    if (!target || target.nonce === lastGoto || spec.kind === "xray") return;
    lastGoto = target.nonce;
    const img = image("image");
    // The page's views are Axial, Coronal, Sagittal: canonical axes 2, 1, 0.
    const axis = [2, 1, 0][target.axis];
    const frac = nv.scene.crosshairPos.slice();
    // dimsRAS, not dims: NiiVue sets an image's dims only once it has blended it, and a case opened
    // with a structure still to go to got here first (a TypeError that left its masks undrawn).
    frac[axis] = Math.min(1, Math.max(0, (target.index + 0.5) / img.dimsRAS[axis + 1]));
    nv.scene.crosshairPos = frac;
  }

  let restoring = false;
  function saveView() {
    const img = image("image");
    if (restoring || !img || !scene || !sceneId) return;
    const kept = Object.assign({}, scene, { level: (img.cal_min + img.cal_max) / 2, width: img.cal_max - img.cal_min });
    delete kept.hidden; // what is drawn over the image starts shown again (see render)
    delete kept.heatHidden;
    delete kept.outline;
    views.set(sceneId, {
      scene: JSON.stringify(kept),
      pan: JSON.stringify(Array.from(nv.scene.pan2Dxyzmm)),
      crosshair: JSON.stringify(Array.from(nv.scene.crosshairPos)),
    });
  }

  function restoreView(saved) {
    nv.scene.pan2Dxyzmm = JSON.parse(saved.pan);
    nv.scene.crosshairPos = JSON.parse(saved.crosshair);
  }

  function setLayout(layout) {
    if (spec.kind !== "xray") prefs.layout = layout;
    const types = {
      multi: NV.SLICE_TYPE.MULTIPLANAR,
      axial: NV.SLICE_TYPE.AXIAL,
      coronal: NV.SLICE_TYPE.CORONAL,
      sagittal: NV.SLICE_TYPE.SAGITTAL,
    };
    nv.opts.multiplanarLayout = NV.MULTIPLANAR_TYPE.ROW;
    nv.opts.sliceType = types[layout]; // the caller draws
  }

  const TOOLS = {
    window: NV.DRAG_MODE.windowing,
    pan: NV.DRAG_MODE.pan,
    measure: NV.DRAG_MODE.measurement,
    crosshair: NV.DRAG_MODE.crosshair,
  };

  function setTool(tool) {
    prefs.tool = tool;
    nv.setMouseEventConfig({
      leftButton: { primary: TOOLS[tool], withCtrl: NV.DRAG_MODE.pan }, // shift: the ruler, below
      rightButton: NV.DRAG_MODE.windowing,
      centerButton: NV.DRAG_MODE.pan,
    });
    for (const b of toolbar.querySelectorAll("button[data-tool]")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  }

  // The window as the reader left it (NiiVue's own drag changes the image's, not the scene's):
  // Invert keeps it (it reset the window to the one the case opened in).
  function keepWindow() {
    const img = image("image");
    if (!img) return;
    scene.level = (img.cal_min + img.cal_max) / 2;
    scene.width = img.cal_max - img.cal_min;
  }

  // Sets the image's window; unless told not to, re-blends the image alone and draws.
  function applyWindow(update) {
    const img = image("image");
    if (!img) return;
    img.cal_min = scene.level - scene.width / 2;
    img.cal_max = scene.level + scene.width / 2;
    img.colormapInvert = scene.invert;
    if (update !== false) reblendImage();
  }

  // Partial re-blends (NiiVue's own window drag does the first): a change of the image's window
  // leaves the overlays' texture as it is, and a change of an overlay leaves the image's texture
  // (and its gradient) as they are. Each draws the scene once.
  function reblendImage() {
    if (nv.volumes.length) nv.refreshLayers(nv.volumes[0], 0);
    nv.drawScene();
  }
  function reblendOverlays() {
    if (nv.volumes.length > 1) {
      for (let i = 1; i < nv.volumes.length; i++) nv.refreshLayers(nv.volumes[i], i);
    }
    nv.drawScene();
  }

  function applyLayers(reblend) {
    const heat = image("heatmap");
    if (heat) {
      heat.colormap = prefs.heatColormap;
      heat.opacity = scene.heatHidden ? 0 : prefs.heatOpacity;
    }
    // The heatmap's colour scale under the picture, in the colours chosen, where the page asks for
    // it (a heatmap beside its image): low contribution on the left, high on the right. The strip
    // is kept (empty) while the heatmap is hidden, and on the unmarked image beside it, so that
    // both pictures keep the same size.
    nv.opts.isColorbar = !!spec.colorbar;
    if (spec.colorbar) {
      for (const v of nv.volumes) v.colorbarVisible = !!heat && v === heat && heat.opacity > 0;
      nv.refreshColormaps();
    }
    const outline = shown.get("outline");
    if (outline && isDrawing(outline)) {
      setDrawColours();
      nv.drawOpacity = scene.outline ? 1 : 0;
    } else if (outline) {
      outline.image.opacity = scene.outline ? 1 : 0;
    }
    const labels = shown.get("labels");
    if (labels && isDrawing(labels)) {
      setDrawColours();
      nv.drawOpacity = prefs.maskOpacity;
    } else if (labels) {
      labels.image.setColormapLabel(labelTable(layer("labels"), scene.hidden));
      labels.image.opacity = prefs.maskOpacity;
    }
    if (reblend !== false) reblendOverlays();
  }

  function setDrawColours() {
    // The drawing's colour table (hidden labels transparent) without re-blending the volume.
    const role = drawingRole();
    if (!role) return;
    nv.drawLut = NV.cmapper.makeDrawLut(labelTable(layer(role), role === "labels" ? scene.hidden : new Set()));
    nv.refreshColormaps();
  }

  function setMaskOpacity(v) {
    prefs.maskOpacity = v;
    const labels = shown.get("labels");
    if (!labels) return;
    if (isDrawing(labels)) nv.setDrawOpacity(v);
    else { labels.image.opacity = v; reblendOverlays(); }
  }

  function updateBanner() {
    const untrained = spec.layers.filter(function (l) {
      if (!l.untrained) return false;
      if (l.role === "heatmap") return !scene.heatHidden && prefs.heatOpacity > 0;
      if (l.role === "labels") return prefs.maskOpacity > 0;
      return true;
    });
    banner.classList.toggle("off", untrained.length === 0);
    banner.textContent = untrained.length ? untrained.map(function (l) { return l.untrained; }).join(" · ") : "\u00a0";
  }

  // --- Toolbar and layer controls (built from the spec; no round trip) ----------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const c of children || []) node.append(c);
    return node;
  }

  function buildToolbar() {
    toolbar.replaceChildren();
    const tools = el("span", { class: "group", role: "group", "aria-label": "Left mouse button" });
    const names = spec.kind === "xray"
      ? [["window", "Window/level"], ["pan", "Pan"], ["measure", "Ruler"]]
      : [["crosshair", "Crosshair"], ["window", "Window/level"], ["pan", "Pan"], ["measure", "Ruler"]];
    for (const [tool, text] of names) {
      tools.append(el("button", { type: "button", "data-tool": tool, "aria-pressed": String(prefs.tool === tool), text: text, onclick: function () { setTool(tool); } }));
    }
    toolbar.append(tools);
    const presets = el("select", { "aria-label": "Window preset", onchange: function (e) {
      const p = spec.presets[Number(e.target.value)];
      if (!p) return;
      scene.level = p.level;
      scene.width = p.width;
      applyWindow();
    } });
    presets.append(el("option", { value: "", text: "Window preset…" }));
    spec.presets.forEach(function (p, i) { presets.append(el("option", { value: String(i), text: p.name })); });
    toolbar.append(presets);
    if (spec.kind !== "xray") {
      const layout = el("select", { "aria-label": "Layout", onchange: function (e) { setLayout(e.target.value); nv.drawScene(); } });
      for (const [v, t] of [["multi", "Three planes"], ["axial", "Axial"], ["coronal", "Coronal"], ["sagittal", "Sagittal"]]) {
        const o = el("option", { value: v, text: t });
        if (v === prefs.layout) o.selected = true;
        layout.append(o);
      }
      toolbar.append(layout);
    }
    const invert = el("input", { type: "checkbox", "aria-label": "Invert" });
    invert.checked = scene.invert;
    invert.addEventListener("change", function () { keepWindow(); scene.invert = invert.checked; applyWindow(); });
    toolbar.append(el("label", {}, [invert, "Invert"]));
    toolbar.append(el("button", { type: "button", text: "Reset", title: "Window, zoom and pan as opened (R)", onclick: reset }));
    toolbar.append(el("span", { class: "hint", text: spec.kind === "xray"
      ? "Drag: tool · right-drag: window · wheel: zoom · middle-drag: pan · shift-drag: ruler"
      : "Wheel or ↑/↓: slices · right-drag: window · ctrl-wheel: zoom · shift-drag: ruler" }));
  }

  function slider(label, value, oninput, attrs) {
    const input = el("input", Object.assign({ type: "range", min: "0", max: "1", step: "0.05", "aria-label": label }, attrs || {}));
    input.value = String(value);
    input.addEventListener("input", function () { oninput(Number(input.value)); });
    return el("label", {}, [label, input]);
  }

  function buildLayerControls() {
    layersBar.replaceChildren();
    const outline = layer("outline");
    if (outline) {
      const box = el("input", { type: "checkbox", "aria-label": outline.caption });
      box.checked = scene.outline;
      box.addEventListener("change", function () {
        scene.outline = box.checked;
        if (drawingRole() === "outline") { applyLayers(false); nv.drawScene(); } else applyLayers();
      });
      layersBar.append(el("label", {}, [box, outline.caption]));
    }
    const heat = layer("heatmap");
    if (heat) {
      const box = el("input", { type: "checkbox", "aria-label": "Show the heatmap" });
      box.checked = !scene.heatHidden;
      box.addEventListener("change", function () { scene.heatHidden = !box.checked; applyLayers(); updateBanner(); });
      layersBar.append(el("label", {}, [box, heat.caption]));
      layersBar.append(slider("Heatmap opacity", prefs.heatOpacity, function (v) {
        prefs.heatOpacity = v;
        const img = image("heatmap");
        if (img) { img.opacity = scene.heatHidden ? 0 : v; reblendOverlays(); }
        updateBanner();
      }, { min: "0", max: "1" }));
      const cmap = el("select", { "aria-label": "Heatmap colormap", onchange: function (e) {
        prefs.heatColormap = e.target.value;
        applyLayers();
      } });
      for (const name of spec.colormaps) {
        const o = el("option", { value: name, text: name });
        if (name === prefs.heatColormap) o.selected = true;
        cmap.append(o);
      }
      layersBar.append(el("label", {}, ["Colormap", cmap]));
    }
    const labels = layer("labels");
    if (labels) {
      layersBar.append(slider("Mask opacity", prefs.maskOpacity, function (v) {
        setMaskOpacity(v);
        updateBanner();
      }));
      for (const l of labels.labels) {
        const box = el("input", { type: "checkbox", "aria-label": "Show " + l.name, "data-label": String(l.value) });
        box.checked = !scene.hidden.has(l.value);
        box.addEventListener("change", function () {
          if (box.checked) scene.hidden.delete(l.value); else scene.hidden.add(l.value);
          const entry = shown.get("labels");
          if (entry && isDrawing(entry)) { setDrawColours(); nv.drawScene(); } else applyLayers();
        });
        const swatch = el("span", { class: "swatch", style: "background:rgb(" + l.rgb.join(",") + ")" });
        layersBar.append(el("label", { title: labels.caption }, [box, swatch, l.value + ": " + l.name]));
      }
    }
  }

  function reset() {
    scene.level = spec.window.level;
    scene.width = spec.window.width;
    scene.invert = false;
    nv.scene.pan2Dxyzmm = [0, 0, 0, 1];
    buildToolbar();
    applyWindow();
  }

  // --- Status line ----------------------------------------------------------------------------
  let statusQueued = false;
  function scheduleStatus() {
    if (statusQueued) return;
    statusQueued = true;
    requestAnimationFrame(function () { statusQueued = false; updateStatus(); });
  }

  function planeIndex() {
    const img = image("image");
    if (!img) return null;
    const vox = img.mm2vox(nv.frac2mm(nv.scene.crosshairPos));
    return [Math.round(vox[0]), Math.round(vox[1]), Math.round(vox[2])];
  }

  function updateStatus() {
    const img = image("image");
    if (!img || !spec) return;
    const width = img.cal_max - img.cal_min;
    const level = (img.cal_max + img.cal_min) / 2;
    const unit = spec.units ? " " + spec.units : "";
    const parts = ["L " + level.toFixed(0) + " / W " + width.toFixed(0) + unit, "zoom " + nv.scene.pan2Dxyzmm[3].toFixed(2) + "×"];
    const dims = img.dims;
    if (spec.kind === "xray") {
      const shape = spec.image_shape && spec.image_shape.length === 2 ? spec.image_shape : [dims[2], dims[1]];
      parts.push(shape[1] + " × " + shape[0] + " px, " + (spec.resolution || "full resolution"));
    } else {
      const v = planeIndex();
      parts.push("axial " + (v[2] + 1) + "/" + dims[3], "coronal " + (v[1] + 1) + "/" + dims[2], "sagittal " + (v[0] + 1) + "/" + dims[1]);
      const mm = nv.frac2mm(nv.scene.crosshairPos);
      parts.push("R-L " + mm[0].toFixed(1) + ", A-P " + mm[1].toFixed(1) + ", S-I " + mm[2].toFixed(1) + " mm");
    }
    parts.push(spec.ruler);
    statusLine.textContent = parts.join(" · ");
  }

  // --- Wheel, keys and pointer ----------------------------------------------------------------
  canvas.addEventListener("mousemove", function (e) {
    const rect = canvas.getBoundingClientRect();
    pointer = { x: e.clientX - rect.left, y: e.clientY - rect.top, inside: true };
  });

  // Zoom about the point under the pointer (NiiVue's own zoom keeps the crosshair, which on a
  // radiograph is the image's middle: zooming out drifted to the top-left corner). The point in mm
  // under the pointer before and after the zoom gives the pan that puts it back (NiiVue's drag
  // pans by the zoom times the distance in mm).
  function zoomBy(steps) {
    const z = nv.scene.pan2Dxyzmm[3] * Math.pow(1.15, steps);
    const dpr = nv.uiData.dpr || window.devicePixelRatio || 1;
    const at = pointer.inside ? [pointer.x * dpr, pointer.y * dpr] : null;
    const before = at ? nv.canvasPos2frac(at) : null;
    nv.scene.pan2Dxyzmm[3] = Math.min(20, Math.max(0.5, z));
    if (before && before[0] >= 0) {
      nv.drawScene(); // the tiles at the new zoom, for the point now under the pointer
      const after = nv.canvasPos2frac(at);
      if (after[0] >= 0) {
        const mmBefore = nv.frac2mm(before);
        const mmAfter = nv.frac2mm(after);
        const zoom = nv.scene.pan2Dxyzmm[3];
        for (let i = 0; i < 3; i++) nv.scene.pan2Dxyzmm[i] += zoom * (mmAfter[i] - mmBefore[i]);
      }
    }
    nv.drawScene();
  }

  function scroll(steps) {
    // In CSS pixels over the canvas (NiiVue scales them); the plane under the pointer, else axial.
    const x = pointer.inside ? pointer.x : canvas.clientWidth / 6;
    const y = pointer.inside ? pointer.y : canvas.clientHeight / 2;
    if (document.activeElement !== canvas) canvas.focus(); // NiiVue scrolls only a focused canvas
    nv.sliceScroll2D(steps, x, y);
  }

  // Shift-drag is the ruler and nothing else: NiiVue also takes a shift-left press as a middle
  // button (a pan, on a volume a shift of the planes past their edges). The press goes on to
  // NiiVue without shift, with the left button's tool the ruler until the button is released.
  canvas.addEventListener("mousedown", function (e) {
    if (e.button !== 0 || !e.shiftKey || e.reviewClone || !nv) return;
    e.stopImmediatePropagation();
    e.preventDefault();
    const tool = prefs.tool;
    nv.setMouseEventConfig({
      leftButton: { primary: NV.DRAG_MODE.measurement },
      rightButton: NV.DRAG_MODE.windowing,
      centerButton: NV.DRAG_MODE.pan,
    });
    // After NiiVue has ended the drag (it reads the tool again on release).
    window.addEventListener("mouseup", function () { setTimeout(function () { setTool(tool); }, 0); }, { once: true });
    const clone = new MouseEvent("mousedown", {
      bubbles: true, cancelable: true, button: 0, buttons: e.buttons, clientX: e.clientX, clientY: e.clientY,
      screenX: e.screenX, screenY: e.screenY, shiftKey: false, ctrlKey: false, altKey: e.altKey, metaKey: e.metaKey,
    });
    clone.reviewClone = true;
    canvas.dispatchEvent(clone);
  }, true);

  // A click on the image gives it the keys (NiiVue's mousedown prevents the browser doing so).
  canvas.addEventListener("mousedown", function () { canvas.focus({ preventScroll: true }); });

  canvas.addEventListener("wheel", function (e) {
    if (!nv || !spec) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    const steps = e.deltaY < 0 ? 1 : -1;
    if (spec.kind === "xray" || e.ctrlKey) zoomBy(steps);
    else {
      const rect = canvas.getBoundingClientRect();
      pointer = { x: e.clientX - rect.left, y: e.clientY - rect.top, inside: true };
      scroll(steps);
    }
  }, { capture: true, passive: false });

  // Keys the app's page handles (verdicts, next finding, next case) are passed on to it, so the
  // reader's shortcuts work while the viewer has the focus.
  const APP_KEYS = new Set(["a", "d", "u", "j", "k", "n"]);
  function forward(e) {
    try {
      const doc = window.parent.document;
      const init = { key: e.key, code: e.code, keyCode: e.keyCode, which: e.which, shiftKey: e.shiftKey, bubbles: true, cancelable: true };
      doc.dispatchEvent(new window.parent.KeyboardEvent(e.type, init));
    } catch (err) {
      /* another origin: the page's shortcuts need the focus outside the viewer */
    }
  }

  function onKey(e) {
    const tag = e.target && e.target.tagName;
    const typing = tag === "SELECT" || (tag === "INPUT" && e.target.type !== "checkbox");
    if (typing || !nv || !spec) return;
    e.stopPropagation(); // NiiVue's own keys (crosshair moves, view cycling) stay off
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (APP_KEYS.has(key)) { forward(e); return; }
    if (e.type !== "keydown") return;
    const xray = spec.kind === "xray";
    if (key === "ArrowUp" || key === "PageUp") { e.preventDefault(); xray ? zoomBy(1) : scroll(1); }
    else if (key === "ArrowDown" || key === "PageDown") { e.preventDefault(); xray ? zoomBy(-1) : scroll(-1); }
    else if (key === "+" || key === "=") zoomBy(1);
    else if (key === "-") zoomBy(-1);
    else if (key === "r") reset();
    else if (key === "i") { keepWindow(); scene.invert = !scene.invert; buildToolbar(); applyWindow(); }
  }
  window.addEventListener("keydown", onKey, true);
  window.addEventListener("keyup", onKey, true);

  // --- For the browser tests and the benchmark ------------------------------------------------
  // Only where they set `window.__reviewViewerHooks = true` before the frame's scripts run (a
  // Playwright init script): a reader's browser never gets them.
  // `arm(type)` resolves with the milliseconds from the next `type` event to the frame after
  // NiiVue has drawn its result and the GPU has finished it (event.timeStamp to the
  // requestAnimationFrame after a synchronous one-pixel read).
  if (window.__reviewViewerHooks === true) window.reviewViewer = {
    state: function () {
      const img = image("image");
      return {
        ready: (!!img || showingNothing) && !busy, // an empty viewer has drawn what it was sent
        scene: sceneId,
        kind: spec ? spec.kind : null,
        calMin: img ? img.cal_min : null,
        calMax: img ? img.cal_max : null,
        invert: scene ? scene.invert : null,
        zoom: nv ? nv.scene.pan2Dxyzmm[3] : null,
        voxel: spec && spec.kind !== "xray" ? planeIndex() : null,
        layers: Array.from(shown.entries()).map(function (e) {
          const entry = layer(e[0]);
          const opacity = isDrawing(e[1]) ? nv.drawOpacity : e[1].image.opacity;
          return { role: e[0], id: e[1].id, opacity: opacity, colormap: e[1].image.colormap, caption: entry ? entry.caption : "", drawing: isDrawing(e[1]) };
        }),
        hiddenLabels: scene ? Array.from(scene.hidden) : [],
        draws: stats.draws,
        cached: Array.from(cache.keys()),
        banner: banner.classList.contains("off") ? "" : banner.textContent,
        status: statusLine.textContent,
        sync: group,
        peers: group && groups.get(group) ? groups.get(group).size : 0,
        driving: host.__reviewViewerDriver === me,
        syncError: syncError,
        pan: nv ? Array.from(nv.scene.pan2Dxyzmm) : null,
        // Where the picture is drawn on the canvas ([left, top, width, height], device pixels),
        // and the colour scales drawn under it (their colormaps).
        picture: nv && nv.screenSlices && nv.screenSlices.length ?
          Array.from(nv.screenSlices[0].leftTopWidthHeight).map(Math.round) : null,
        colorbars: nv && nv.opts.isColorbar ?
          nv.colormapLists.filter(function (c) { return c.visible; }).map(function (c) { return c.name; }) : [],
        rulerUnits: nv ? (nv.opts.showMeasureUnits ? "mm" : "") : null,
        // The letters NiiVue draws at each plane's left and top edges (its own rule, from the
        // options this viewer sets), for the tests that check the picture agrees with them.
        letters: nv && spec && spec.kind !== "xray" ? {
          axial: { left: nv.opts.isRadiologicalConvention ? "R" : "L", top: "A" },
          coronal: { left: nv.opts.isRadiologicalConvention ? "R" : "L", top: "S" },
          sagittal: { left: nv.opts.sagittalNoseLeft ? "A" : "P", top: "S" },
        } : null,
      };
    },
    // The image point (mm) under a canvas position in CSS pixels, or null off the image.
    pointAt: function (x, y) {
      const dpr = nv.uiData.dpr || window.devicePixelRatio || 1;
      const frac = nv.canvasPos2frac([x * dpr, y * dpr]);
      return frac[0] >= 0 ? Array.from(nv.frac2mm(frac)).slice(0, 3) : null;
    },
    // What the canvas shows now, drawn afresh and read back: {width, height, rgb (base64, rows
    // from the top)}.
    pixels: function () {
      nv.drawScene();
      const gl = nv.gl;
      const w = gl.drawingBufferWidth;
      const h = gl.drawingBufferHeight;
      const rgba = new Uint8Array(w * h * 4);
      gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, rgba);
      const rgb = new Uint8Array(w * h * 3);
      for (let y = 0; y < h; y++) {
        const from = (h - 1 - y) * w * 4; // GL rows start at the bottom
        for (let x = 0; x < w; x++) {
          rgb[(y * w + x) * 3] = rgba[from + x * 4];
          rgb[(y * w + x) * 3 + 1] = rgba[from + x * 4 + 1];
          rgb[(y * w + x) * 3 + 2] = rgba[from + x * 4 + 2];
        }
      }
      let text = "";
      for (let i = 0; i < rgb.length; i += 0x8000) text += String.fromCharCode.apply(null, rgb.subarray(i, i + 0x8000));
      return { width: w, height: h, rgb: btoa(text) };
    },
    arm: function (type, timeoutMs) {
      return new Promise(function (resolve) {
        const pending = { type: type, event: null, resolve: resolve };
        armed = pending;
        setTimeout(function () { if (armed === pending) { armed = null; resolve(NaN); } }, timeoutMs || 10000);
      });
    },
  };

  post("streamlit:componentReady", { apiVersion: 1 });
  setHeight();
})();

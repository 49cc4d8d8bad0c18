// keras_gen's sampling page: latents drawn from a seed in JavaScript, decoded into
// images by the preset's ONNX decode signature in onnxruntime-web (WebAssembly, one
// thread, so any static file server will do).
//
// For tests and for anyone comparing with Python, the last grid drawn is described by
// window.keras_gen_result = {seed, latents, labels, shape, pixels}: the latents and
// labels fed to the model (one array per sample), the output's shape [n, H, W, C] and
// the pixels as drawn on each canvas (0..255, H*W*C values per sample, row-major).
// A failure sets window.keras_gen_error. document.body.dataset.state follows along:
// "loading", "ready" or "error".
"use strict";

(() => {
  const config = JSON.parse(
    document.getElementById("keras-gen-config").textContent,
  );
  const latentDim = config.latent_dim;
  const heads = Object.keys(config.conditions);
  const SEED_MAX = 4294967295;
  const STRIP_STEPS = 8;
  const SLIDER_RANGE = 3;

  // The latents. mulberry32 (a public-domain 32-bit generator) is seeded with the
  // seed; each latent value takes two of its outputs x1, x2 through Box-Muller's
  // cosine branch,
  //   u = (x + 0.5) / 2**32,   z = sqrt(-2 ln u1) * cos(2 pi u2),
  // stored as float32, sample after sample, dimension after dimension. This is not
  // TensorFlow's Philox generator, so a seed here does not give the images that
  // `keras-gen sample --seed` gives for it.
  function mulberry32(seed) {
    let state = seed >>> 0;
    return () => {
      state = (state + 0x6d2b79f5) >>> 0;
      let t = state;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return (t ^ (t >>> 14)) >>> 0;
    };
  }

  function standardNormals(seed, count) {
    const next = mulberry32(seed);
    const values = new Float32Array(count);
    for (let i = 0; i < count; i += 1) {
      const u1 = (next() + 0.5) / 4294967296;
      const u2 = (next() + 0.5) / 4294967296;
      values[i] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    }
    return values;
  }

  const element = (id) => document.getElementById(id);
  const state = { seed: 0, latents: null, labels: null, selected: 0 };
  const cells = [];
  const sliders = [];
  const strip = [];
  let session = null;
  let queue = Promise.resolve();

  // One run at a time: a WebAssembly session takes its requests in turn.
  function decode(latents, rows, labels) {
    const feeds = {
      latents: new ort.Tensor("float32", latents, [rows, latentDim]),
    };
    if (heads.length) {
      feeds.labels = new ort.Tensor("int32", labels, [rows, heads.length]);
    }
    const run = queue.then(() => session.run(feeds));
    queue = run.catch(() => undefined);
    return run.then((outputs) => outputs[config.output]);
  }

  // Sample `index` of images [n, H, W, C] in [0, 1], drawn as round(255 * value).
  function draw(canvas, images, index) {
    const [, height, width, channels] = images.dims;
    const offset = index * height * width * channels;
    const pixels = new ImageData(width, height);
    for (let p = 0; p < height * width; p += 1) {
      for (let c = 0; c < 3; c += 1) {
        const value = images.data[offset + p * channels + (channels === 1 ? 0 : c)];
        pixels.data[4 * p + c] = Math.round(255 * Math.min(1, Math.max(0, value)));
      }
      pixels.data[4 * p + 3] = 255;
    }
    canvas.width = width;
    canvas.height = height;
    canvas.classList.toggle("small", width < 48); // sharp pixels, not a blur
    canvas.getContext("2d").putImageData(pixels, 0, 0);
  }

  function drawnPixels(canvas, channels) {
    const context = canvas.getContext("2d");
    const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
    const values = [];
    for (let p = 0; p < data.length; p += 4) {
      for (let c = 0; c < channels; c += 1) values.push(data[p + c]);
    }
    return values;
  }

  const rowsOf = (values, width) =>
    Array.from({ length: width ? values.length / width : 0 }, (_, row) =>
      Array.from(values.slice(row * width, (row + 1) * width)),
    );

  function chosenLabels(rows) {
    const chosen = heads.map((_, head) => Number(element(`head-${head}`).value));
    const labels = new Int32Array(rows * heads.length);
    for (let row = 0; row < rows; row += 1) labels.set(chosen, row * heads.length);
    return labels;
  }

  const latentsOf = (index) =>
    state.latents.slice(index * latentDim, (index + 1) * latentDim);
  const labelsOf = (index) =>
    state.labels.slice(index * heads.length, (index + 1) * heads.length);

  async function sample(seed) {
    state.seed = seed;
    state.latents = standardNormals(seed, config.grid * latentDim);
    state.labels = chosenLabels(config.grid);
    const images = await decode(state.latents, config.grid, state.labels);
    cells.forEach((canvas, index) => draw(canvas, images, index));
    await select(state.selected);
    window.keras_gen_result = {
      seed,
      latents: rowsOf(state.latents, latentDim),
      labels: rowsOf(state.labels, heads.length),
      shape: Array.from(images.dims),
      pixels: cells.map((canvas) => drawnPixels(canvas, images.dims[3])),
    };
  }

  async function select(index) {
    state.selected = index;
    cells.forEach((canvas, i) => canvas.classList.toggle("selected", i === index));
    sliders.forEach((input, dimension) => {
      input.value = state.latents[index * latentDim + dimension];
      input.title = Number(input.value).toFixed(2);
    });
    await redraw(false);
  }

  // The selected sample and the strip from it to the next sample (linear in the
  // latents); after a slider moved, the sample's grid cell too.
  async function redraw(moved) {
    const index = state.selected;
    const single = await decode(latentsOf(index), 1, labelsOf(index));
    draw(element("selected"), single, 0);
    if (moved) draw(cells[index], single, 0);
    const from = latentsOf(index);
    const to = latentsOf((index + 1) % config.grid);
    const path = new Float32Array(STRIP_STEPS * latentDim);
    for (let step = 0; step < STRIP_STEPS; step += 1) {
      const t = step / (STRIP_STEPS - 1);
      for (let d = 0; d < latentDim; d += 1) {
        path[step * latentDim + d] = (1 - t) * from[d] + t * to[d];
      }
    }
    const labels = new Int32Array(STRIP_STEPS * heads.length);
    for (let step = 0; step < STRIP_STEPS; step += 1) {
      labels.set(labelsOf(index), step * heads.length);
    }
    const images = await decode(path, STRIP_STEPS, labels);
    strip.forEach((canvas, step) => draw(canvas, images, step));
  }

  // Slider moves come faster than the model runs: redraw once more after the last.
  let redrawing = null;
  let stale = false;
  function refresh() {
    if (redrawing) {
      stale = true;
      return;
    }
    redrawing = (async () => {
      do {
        stale = false;
        await redraw(true);
      } while (stale);
    })()
      .catch(fail)
      .finally(() => {
        redrawing = null;
      });
  }

  function status(text, kind) {
    element("status").textContent = text;
    element("status").className = kind || "";
  }

  function fail(error) {
    const message = String((error && error.message) || error);
    window.keras_gen_error = message;
    document.body.dataset.state = "error";
    status(`Failed: ${message}`, "error");
  }

  function parsedSeed(text) {
    const seed = Number(text);
    if (!/^\s*\d+\s*$/.test(text) || seed > SEED_MAX) {
      throw new Error(`the seed must be an integer from 0 to ${SEED_MAX}, got "${text}"`);
    }
    return seed;
  }

  async function run(seedText) {
    try {
      const seed = parsedSeed(seedText);
      element("seed").value = seed;
      document.body.dataset.state = "loading";
      status("Sampling…");
      const started = performance.now();
      await sample(seed);
      const took = Math.round(performance.now() - started);
      status(`Seed ${seed}: ${config.grid} samples and the editor in ${took} ms.`);
      document.body.dataset.state = "ready";
    } catch (error) {
      fail(error);
    }
  }

  function build() {
    document.title = `${config.title} · keras_gen`;
    element("title").textContent = config.title;
    element("footer").textContent =
      `The ${config.signature} signature of ${config.title} (keras_gen ` +
      `${config.keras_gen}), run in this browser by onnxruntime-web ` +
      `${config.onnxruntime_web} on WebAssembly, one thread. Latents: mulberry32 ` +
      "and Box-Muller from the seed (see keras_gen.js), not TensorFlow's " +
      "generator, so a seed here does not give the images keras-gen sample gives.";
    for (let index = 0; index < config.grid; index += 1) {
      const canvas = document.createElement("canvas");
      canvas.addEventListener("click", () => select(index).catch(fail));
      element("grid").append(canvas);
      cells.push(canvas);
    }
    for (let dimension = 0; dimension < config.sliders; dimension += 1) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      Object.assign(input, { type: "range", step: "0.01" });
      Object.assign(input, { min: -SLIDER_RANGE, max: SLIDER_RANGE });
      input.addEventListener("input", () => {
        state.latents[state.selected * latentDim + dimension] = Number(input.value);
        input.title = Number(input.value).toFixed(2);
        refresh();
      });
      label.append(`z[${dimension}]`, input);
      element("sliders").append(label);
      sliders.push(input);
    }
    for (let step = 0; step < STRIP_STEPS; step += 1) {
      const canvas = document.createElement("canvas");
      element("strip").append(canvas);
      strip.push(canvas);
    }
    heads.forEach((head, index) => {
      const label = document.createElement("label");
      const select = document.createElement("select");
      select.id = `head-${index}`;
      config.conditions[head].forEach((name, value) => select.add(new Option(name, value)));
      select.addEventListener("change", () => run(element("seed").value));
      label.append(`${head} `, select);
      element("conditions").append(label);
    });
    element("controls").addEventListener("submit", (event) => {
      event.preventDefault();
      run(element("seed").value);
    });
    element("next").addEventListener("click", () =>
      run(String(Math.min(SEED_MAX, state.seed + 1))),
    );
  }

  async function start() {
    build();
    // Threads need SharedArrayBuffer, which a page gets only when cross-origin
    // isolated; one thread runs from any static server.
    ort.env.wasm.numThreads = 1;
    ort.env.wasm.proxy = false;
    session = await ort.InferenceSession.create(config.model, {
      executionProviders: ["wasm"],
    });
    await run(new URLSearchParams(location.search).get("seed") || "0");
  }

  start().catch(fail);
})();

/**
 * What the project knows about a model: its identity (SHA-256 of the file), where a fresh machine gets it,
 * its input tensor and how an image becomes that tensor, and what its output means.
 */

export type TensorDtype = 'float32' | 'float16';

/** How decoded RGB pixels (0..255) become the model's input. */
export interface ImagePreprocess {
  kind: 'image';
  /** Centre-crop side S; the input is [N, 3, S, S]. */
  size: number;
  /** The shorter side is first resized to this (round(S / 0.875) for every catalog model). */
  resize: number;
  channels: 'RGB' | 'BGR';
  /** value = (pixel * scale - mean[c]) / std[c], with mean and std in the order of `channels`. */
  scale: number;
  mean: readonly [number, number, number];
  std: readonly [number, number, number];
}

/** Grey digits, [1, 1, 28, 28] with values pixel / 255 (white digit on black). */
export interface GreyPreprocess {
  kind: 'grey';
  size: number;
}

/** No image path: the client sends the model's exact input tensor. */
export interface TensorOnly {
  kind: 'tensor';
}

export type Preprocess = ImagePreprocess | GreyPreprocess | TensorOnly;

export interface TensorSpec {
  name: string;
  dtype: TensorDtype;
  /** Dimensions; null where the model accepts any size (the batch dimension of dynamic models). */
  shape: (number | null)[];
}

export interface ModelSpec {
  /** The catalog name: the file name without `.onnx`. */
  name: string;
  sha256: string;
  bytes: number;
  input: TensorSpec;
  output: TensorSpec & { meaning: 'logits' | 'probabilities' };
  preprocess: Preprocess;
  labels: 'imagenet1k' | 'mnist10' | 'none';
  /** A public download whose bytes hash to `sha256`; absent when there is none (import it from a folder). */
  url?: string;
  /** Where the bytes come from, in words (and why there is no URL when there is none). */
  source: string;
  license: string;
}

/**
 * Why a node running model `from` cannot be updated to model `to` (null when it can). Its votes are compared
 * with the other nodes' by class index, so `to` must label its answers with the same label set; and it must
 * take the inputs the group's clients send: images when `from` does, else the same input tensor (an image
 * model's own input size may differ: each node resizes the image for its model). An MNIST model loaded by the
 * owner of an ImageNet node, once ordered, voted digits 0-9 as the ImageNet classes 0-9.
 */
export function modelUpdateProblem(from: ModelSpec, to: ModelSpec): string | null {
  if (from.labels !== to.labels)
    return `${from.name} labels its answers ${from.labels}, ${to.name} ${to.labels} (the group compares votes by class index)`;
  const tensorOnly = (s: ModelSpec) => s.preprocess.kind === 'tensor';
  const takes = (s: ModelSpec) =>
    tensorOnly(s) ? `only the tensor ${s.input.dtype} [${s.input.shape.slice(1).join(', ')}]` : 'images';
  if (
    tensorOnly(from) !== tensorOnly(to) ||
    (tensorOnly(from) &&
      (from.input.dtype !== to.input.dtype ||
        from.input.shape.slice(1).join(',') !== to.input.shape.slice(1).join(',')))
  )
    return `${from.name} takes ${takes(from)}, ${to.name} ${takes(to)} (it would refuse the inputs the group's clients send)`;
  return null;
}

/** True when the model's batch dimension is fixed at 1 (run request by request). */
export function fixedBatchOne(spec: Pick<ModelSpec, 'input'>): boolean {
  return spec.input.shape[0] === 1;
}

/**
 * Session config entries every onnxruntime session of ours sets (session-worker.ts, and the inference bench's
 * bare loop, so that it times the same kernels). `session.x64quantprecision`: on x86 CPUs without VNNI (AVX2
 * only, or AVX-512 without VNNI) onnxruntime's fast u8 x s8 matrix kernels saturate 16-bit intermediate sums,
 * so a quantized model gives other answers there than on a VNNI CPU (measured on such a machine, 2026-11-30:
 * top-1 agreement with models/reference-predictions.json 0.82-0.90 instead of >= 0.99 for the int8/QDQ
 * models). A group must agree across its owners' machines, so this is a correctness setting, not a speed
 * trade-off: onnxruntime then uses its exact (slower) u8 x u8 kernels there (docs/inference.md: +12 % for
 * MobileNetV2 int8 on that machine; VNNI CPUs were exact already).
 */
export const ORT_SESSION_CONFIG = { session: { x64quantprecision: '1' } } as const;

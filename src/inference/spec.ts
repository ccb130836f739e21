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

/** True when the model's batch dimension is fixed at 1 (run request by request). */
export function fixedBatchOne(spec: Pick<ModelSpec, 'input'>): boolean {
  return spec.input.shape[0] === 1;
}

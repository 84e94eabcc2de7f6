"""Qwen2.5-VL's M-RoPE position ids transcribed from the original published code (Qwen2.5-VL's
`get_rope_index` as released with the models, transformers 4.49), kept independent of engine.native.

Walks each row's attended tokens from one vision segment to the next (segments found by their token
ids, counted by the <|vision_start|> before them): the text before a segment starts at
max(previous positions) + 1, the segment at text start + text length, with
t_index = long(arange(t) * second_per_grid_t * tokens_per_second) in float32 (0 for images).
"""
import torch


def original_rope_index(input_ids, image_grid_thw=None, video_grid_thw=None, second_per_grid_ts=None,
                        attention_mask=None, *, spatial_merge_size, tokens_per_second, image_token_id,
                        video_token_id, vision_start_token_id):
    if image_grid_thw is None and video_grid_thw is None:
        if attention_mask is None:
            pos = torch.arange(input_ids.shape[1]).view(1, 1, -1).expand(3, input_ids.shape[0], -1)
            return pos.clone(), torch.zeros(input_ids.shape[0], 1, dtype=torch.long)
        pos = attention_mask.long().cumsum(-1) - 1
        pos.masked_fill_(attention_mask == 0, 1)
        pos = pos.unsqueeze(0).expand(3, -1, -1).clone()
        return pos, pos.max(0)[0].max(-1, keepdim=True)[0] + 1 - attention_mask.shape[-1]

    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    position_ids = torch.ones(3, *input_ids.shape, dtype=input_ids.dtype)
    image_index = video_index = 0
    deltas = []
    for i, row in enumerate(input_ids):
        row = row[attention_mask[i] == 1]
        starts = torch.argwhere(row == vision_start_token_id).squeeze(1)
        after = row[starts + 1]
        image_nums, video_nums = int((after == image_token_id).sum()), int((after == video_token_id).sum())
        tokens = row.tolist()
        pieces, st = [], 0
        remain_images, remain_videos = image_nums, video_nums
        for _ in range(image_nums + video_nums):
            ed_image = tokens.index(image_token_id, st) if image_token_id in tokens and remain_images > 0 \
                else len(tokens) + 1
            ed_video = tokens.index(video_token_id, st) if video_token_id in tokens and remain_videos > 0 \
                else len(tokens) + 1
            if ed_image < ed_video:
                t, h, w = image_grid_thw[image_index]
                second_per_grid_t = 0
                image_index += 1
                remain_images -= 1
                ed = ed_image
            else:
                t, h, w = video_grid_thw[video_index]
                second_per_grid_t = second_per_grid_ts[video_index] if second_per_grid_ts is not None else 1.0
                video_index += 1
                remain_videos -= 1
                ed = ed_video
            gt, gh, gw = t.item(), h.item() // spatial_merge_size, w.item() // spatial_merge_size
            text_len = ed - st
            st_idx = pieces[-1].max() + 1 if pieces else 0
            pieces.append(torch.arange(text_len).view(1, -1).expand(3, -1) + st_idx)

            expanded = torch.arange(gt).view(-1, 1).expand(-1, gh * gw)
            # A 0-d float32 tensor (or a Python float) times an int64 tensor is float32.
            second_per_grid_t = torch.as_tensor(second_per_grid_t, dtype=torch.float32)
            t_index = (expanded * second_per_grid_t * tokens_per_second).long().flatten()
            h_index = torch.arange(gh).view(1, -1, 1).expand(gt, -1, gw).flatten()
            w_index = torch.arange(gw).view(1, 1, -1).expand(gt, gh, -1).flatten()
            pieces.append(torch.stack([t_index, h_index, w_index]) + text_len + st_idx)
            st = ed + gt * gh * gw
        if st < len(tokens):
            st_idx = pieces[-1].max() + 1 if pieces else 0
            pieces.append(torch.arange(len(tokens) - st).view(1, -1).expand(3, -1) + st_idx)
        positions = torch.cat(pieces, dim=1).reshape(3, -1)
        position_ids[..., i, attention_mask[i] == 1] = positions.to(position_ids.dtype)
        deltas.append(positions.max() + 1 - len(input_ids[i]))
    return position_ids, torch.tensor(deltas).unsqueeze(1)


def original_rope_config(config) -> dict:
    """original_rope_index's keyword arguments, read from a Qwen2.5-VL config."""
    return dict(spatial_merge_size=config.vision_config.spatial_merge_size,
                tokens_per_second=config.vision_config.tokens_per_second, image_token_id=config.image_token_id,
                video_token_id=config.video_token_id, vision_start_token_id=config.vision_start_token_id)

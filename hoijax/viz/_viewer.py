"""The browser viewer of ``hoijax view`` (viser): meshes per frame on a timeline, the camera
frustum with the frame's image, the ground truth beside the estimate, contact and penetration
coloured on the hand from the object's SDF, and per-frame errors and loss terms as plots
whose cursor follows the timeline.

The scene is camera-centred (OpenCV axes: x right, y down, z forward, metres), so the frustum
sits at the origin and "up" is -y.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from hoijax.viz._scene import CONTACT_M, Scene, frame_labels

_SKIN = np.array([214, 176, 150], np.uint8)
_CONTACT = np.array([40, 190, 80], np.uint8)
_PENETRATION = np.array([220, 30, 30], np.uint8)
_GT = (150, 150, 150)


def hand_colours(sdf_m: np.ndarray) -> np.ndarray:
    """(V, 3) uint8 per hand vertex: skin away from the object, green in contact (outside,
    within :data:`CONTACT_M`), red inside it, darker the deeper (full red at 5 mm)."""
    out = np.repeat(_SKIN[None], len(sdf_m), axis=0)
    out[(sdf_m >= 0) & (sdf_m < CONTACT_M)] = _CONTACT
    inside = sdf_m < 0
    depth = np.clip(-sdf_m[inside] / 0.005, 0.0, 1.0)[:, None]
    out[inside] = ((1 - 0.5 * depth) * _PENETRATION).astype(np.uint8)
    return out


def _wxyz(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(R).as_quat()
    return np.array([w, x, y, z])


class Viewer:
    """A viser server showing ``scenes`` (name → :class:`Scene`); ``frame`` is the slider."""

    def __init__(self, scenes: dict[str, Scene], host: str = "127.0.0.1", port: int = 8080):
        import viser

        self.scenes = scenes
        self.server = viser.ViserServer(host=host, port=port, verbose=False)
        self.server.scene.set_up_direction("-y")
        self._lock = threading.Lock()
        self._playing = False
        gui = self.server.gui
        names = list(scenes)
        self.sequence = gui.add_dropdown("sequence", names, initial_value=names[0])
        first = scenes[names[0]]
        self.frame = gui.add_slider("frame", 0, max(first.num_frames - 1, 1), 1, 0)
        self.play = gui.add_checkbox("play", False)
        self.fps = gui.add_slider("fps", 1, 30, 1, 8)
        self.show_gt = gui.add_checkbox("ground truth", True)
        self.show_image = gui.add_checkbox("camera image", True)
        self.status = gui.add_markdown("")
        gui.add_markdown("Hand colours: green = contact (< 5 mm from the object), red = "
                         "inside the object; grey meshes = ground truth.")
        self.error_plot = None
        self.term_plot = None
        self.sequence.on_update(lambda _: self._load_sequence())
        self.frame.on_update(lambda _: self._show_frame())
        self.show_gt.on_update(lambda _: self._show_frame())
        self.show_image.on_update(lambda _: self._show_frame())
        self._load_sequence()
        threading.Thread(target=self._player, daemon=True).start()

    @property
    def url(self) -> str:
        host = self.server.get_host()
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:" \
               f"{self.server.get_port()}"

    @property
    def scene(self) -> Scene:
        return self.scenes[self.sequence.value]

    def _load_sequence(self) -> None:
        s, sc = self.scene, self.server.scene
        with self._lock:
            self.frame.max = max(s.num_frames - 1, 1)
            self.frame.value = min(self.frame.value, s.num_frames - 1)
            self._obj = sc.add_mesh_simple("/object", s.obj_verts, s.obj_faces,
                                           color=(60, 150, 235), scale=tuple(s.obj_scale))
            self._gt_obj = None
            if s.gt_T_cam_obj is not None:
                self._gt_obj = sc.add_mesh_simple("/gt/object", s.obj_verts, s.obj_faces,
                                                  color=_GT, opacity=0.35,
                                                  scale=tuple(s.gt_obj_scale))
            H, W = s.image_size
            fy = float(s.K[1, 1])
            self._fov = 2 * np.arctan2(H / 2, fy)
            self._aspect = W / H
            self._plots(s)
            # start behind and above the camera, looking at the middle of the action
            centre = np.mean(s.T_cam_obj[:, :3, 3], axis=0)
            cam = self.server.initial_camera
            cam.up = (0.0, -1.0, 0.0)
            cam.look_at = tuple(centre)
            cam.position = tuple(centre + np.array([0.12, -0.1, -0.22]) * (1 + centre[2]))
        self._show_frame()

    def _plots(self, s: Scene) -> None:
        import viser.uplot as uplot

        for h in (self.error_plot, self.term_plot):
            if h is not None:
                h.remove()
        x = np.arange(s.num_frames, dtype=np.float64)
        self._x = x

        def plot(title, names, columns):
            ys = tuple(np.nan_to_num(np.asarray(c, np.float64), nan=0.0) for c in columns)
            cursor = np.full_like(x, np.nan)
            series = (uplot.Series(label="frame"),
                      *(uplot.Series(label=n, stroke=c, width=1.5)
                        for n, c in zip(names, ("#e6194b", "#3cb44b", "#4363d8", "#f58231"))),
                      uplot.Series(label="now", stroke="#000000", width=0,
                                   points={"show": True, "size": 9}))
            return self.server.gui.add_uplot(
                (x, *ys, cursor), series, title=title, aspect=1.6,
                scales={"x": uplot.Scale(time=False)}), len(ys)

        self.error_plot = self.term_plot = None
        if s.errors:
            names = ["rotation °", "translation mm", "hand mm"]
            cols = [s.errors["rot_err_deg"], s.errors["trans_err_mm"], s.errors["hand_mm"]]
            self.error_plot = plot("errors per frame", names, cols)
        if s.terms.size and np.any(s.terms):
            self.term_plot = plot("step-2 loss terms (processed frames)", list(s.term_names),
                                  list(s.terms.T))

    def _cursor(self, handle, f: int) -> None:
        if handle is None:
            return
        plot, k = handle
        data = list(plot.data)
        cur = np.full_like(self._x, np.nan)
        cur[f] = np.nanmax([d[f] for d in data[1:1 + k]] + [0.0])
        plot.data = (*data[:1 + k], cur)

    def _show_frame(self) -> None:
        import trimesh

        s, sc = self.scene, self.server.scene
        with self._lock:
            f = int(np.clip(self.frame.value, 0, s.num_frames - 1))
            hand = trimesh.Trimesh(s.hand_verts[f], s.hand_faces, process=False)
            hand.visual.vertex_colors = hand_colours(s.hand_sdf_m[f])
            sc.add_mesh_trimesh("/hand", hand)
            T = s.T_cam_obj[f]
            self._obj.wxyz, self._obj.position = _wxyz(T[:3, :3]), T[:3, 3]
            show_gt = self.show_gt.value and s.gt_hand_verts is not None
            if s.gt_hand_verts is not None:
                sc.add_mesh_simple("/gt/hand", s.gt_hand_verts[f], s.hand_faces, color=_GT,
                                   opacity=0.35, visible=show_gt)
            if self._gt_obj is not None:
                G = s.gt_T_cam_obj[f]
                self._gt_obj.wxyz, self._gt_obj.position = _wxyz(G[:3, :3]), G[:3, 3]
                self._gt_obj.visible = show_gt
            image = s.images[f] if (s.images is not None and self.show_image.value) else None
            sc.add_camera_frustum("/camera", fov=self._fov, aspect=self._aspect, scale=0.08,
                                  image=image, color=(40, 40, 40), thickness=0.002)
            label = frame_labels(s.processed)[f]
            sdf = s.hand_sdf_m[f]
            text = (f"**frame {f}** of {s.num_frames} · {label}"
                    + (" · anchor" if f == s.anchor else "")
                    + f"  \ncontact {int(np.sum((sdf >= 0) & (sdf < CONTACT_M)))} vertices · "
                    f"deepest penetration {max(0.0, -float(sdf.min())) * 1000:.1f} mm")
            if s.errors:
                e = s.errors
                text += (f"  \nobject {e['rot_err_deg'][f]:.2f}°, {e['trans_err_mm'][f]:.1f} mm"
                         f" · hand {e['hand_mm'][f]:.1f} mm")
            self.status.content = text
            self._cursor(self.error_plot, f)
            self._cursor(self.term_plot, f)

    def _player(self) -> None:
        while True:
            time.sleep(1.0 / max(float(self.fps.value), 1.0))
            if self.play.value:
                n = self.scene.num_frames
                self.frame.value = (int(self.frame.value) + 1) % n

    def stop(self) -> None:
        self.server.stop()
